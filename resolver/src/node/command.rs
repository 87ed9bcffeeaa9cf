//! The registry's operations as typed commands, the one form every surface parses its
//! requests into: the Handle wire ([`Command::from_message`]), REST, the redirect face, and
//! later DNS. A command says what is asked, not how it travelled; the node carries it out with
//! one set of rules and one write path, and answers with a typed [`Done`] that each surface
//! renders in its own format (Handle message bodies, REST JSON, redirect pages).
//!
//! One module per family: [`super::read`] (resolution), [`super::values`] (create, add,
//! modify, remove, delete) and [`super::prefixes`] (lists, homing). What only the Handle wire
//! has (site info, challenges, sessions, OC 201) stays in the protocol code of the node.

use suyuan_codec::message::{Body, Message, flags, opcode, rc};
use suyuan_codec::value::HandleValue;

pub use super::prefixes::{Home, ListHandles, Unhome};
pub use super::read::Resolve;
pub use super::values::{AddValues, Create, Delete, ModifyValues, RemoveValues};

/// One operation on the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    Resolve(Resolve),
    Create(Create),
    AddValues(AddValues),
    ModifyValues(ModifyValues),
    RemoveValues(RemoveValues),
    Delete(Delete),
    ListHandles(ListHandles),
    Home(Home),
    Unhome(Unhome),
    /// The prefixes this node homes (node administrators only).
    ListHomed,
}

/// What a command gave when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Done {
    /// A resolution's values; `handle` spelled as the request spelled it.
    Values {
        handle: String,
        values: Vec<HandleValue>,
    },
    /// A create: the handle made (minted, or as asked).
    Created(String),
    /// A list of handles, whole.
    Handles(Vec<String>),
    /// A change that answers nothing but success.
    Nothing,
}

/// What a command carried out for a surface gave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Executed {
    Done(Done),
    Refused(u32, String),
    /// Only an authenticated caller may do this.
    NeedAuth,
}

impl Command {
    /// The command a Handle request asks for, or the refusal to answer it with. `forward`:
    /// the node may walk a resolution it does not hold through the hierarchy for the client.
    pub fn from_message(m: &Message, forward: bool) -> Result<Command, (u32, String)> {
        let op = m.header.op_code;
        let has = |f| m.header.has(f);
        Ok(match (&m.body, op) {
            (
                Body::Resolution {
                    handle,
                    indexes,
                    types,
                },
                _,
            ) => Command::Resolve(Resolve {
                handle: handle.clone(),
                indexes: indexes.clone(),
                types: types.clone(),
                public_only: has(flags::PO),
                refer: !has(flags::DNRF),
                forward,
            }),
            (Body::HandleValues { handle, values }, opcode::CREATE_HANDLE) => {
                Command::Create(Create {
                    handle: handle.clone(),
                    values: values.clone(),
                    overwrite: has(flags::OVRW),
                    mint: has(flags::MINT),
                })
            }
            (Body::HandleValues { handle, values }, opcode::ADD_VALUE) => {
                Command::AddValues(AddValues {
                    handle: handle.clone(),
                    values: values.clone(),
                    overwrite: has(flags::OVRW),
                })
            }
            (Body::HandleValues { handle, values }, opcode::MODIFY_VALUE) => {
                Command::ModifyValues(ModifyValues {
                    handle: handle.clone(),
                    values: values.clone(),
                })
            }
            (Body::HandleValues { .. }, _) => {
                return Err((
                    rc::PROTOCOL_ERROR,
                    "values in a request that takes none".into(),
                ));
            }
            (Body::RemoveValue { handle, indexes }, _) => Command::RemoveValues(RemoveValues {
                handle: handle.clone(),
                indexes: indexes.clone(),
            }),
            (Body::Handle { handle }, opcode::DELETE_HANDLE) => Command::Delete(Delete {
                handle: handle.clone(),
            }),
            (Body::Handle { handle }, opcode::LIST_HANDLES) => Command::ListHandles(ListHandles {
                prefix: handle.clone(),
            }),
            (Body::Handle { handle }, opcode::HOME_NA) => Command::Home(Home {
                prefix: handle.clone(),
            }),
            (Body::Handle { handle }, opcode::UNHOME_NA) => Command::Unhome(Unhome {
                prefix: handle.clone(),
            }),
            (Body::Handle { .. }, opcode::LIST_HOMED_NAS) => Command::ListHomed,
            _ => {
                return Err((
                    rc::OPERATION_NOT_SUPPORTED,
                    format!("opcode {op} is not supported"),
                ));
            }
        })
    }

    /// The Handle operation this command is: surfaces map response codes to their statuses
    /// by it, as the reference does.
    pub fn opcode(&self) -> u32 {
        match self {
            Command::Resolve(_) => opcode::RESOLUTION,
            Command::Create(_) => opcode::CREATE_HANDLE,
            Command::AddValues(_) => opcode::ADD_VALUE,
            Command::ModifyValues(_) => opcode::MODIFY_VALUE,
            Command::RemoveValues(_) => opcode::REMOVE_VALUE,
            Command::Delete(_) => opcode::DELETE_HANDLE,
            Command::ListHandles(_) => opcode::LIST_HANDLES,
            Command::Home(_) => opcode::HOME_NA,
            Command::Unhome(_) => opcode::UNHOME_NA,
            Command::ListHomed => opcode::LIST_HOMED_NAS,
        }
    }

    /// Whether the command is cheap enough to carry out on the calling task: a resolution
    /// is a cache lookup or one read of the store; everything else (writes wait for their
    /// durable commit) belongs on a blocking thread.
    pub fn is_light(&self) -> bool {
        matches!(self, Command::Resolve(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(op: u32, op_flags: u32, body: Body) -> Result<Command, (u32, String)> {
        Command::from_message(&Message::request(op, op_flags, 1, 0, body), false)
    }

    #[test]
    fn wire_requests_become_the_commands_their_flags_say() {
        let c = parsed(
            opcode::RESOLUTION,
            flags::PO | flags::DNRF,
            Body::Resolution {
                handle: "88.888/x".into(),
                indexes: vec![1],
                types: vec!["URL".into()],
            },
        )
        .unwrap();
        let Command::Resolve(r) = c else {
            panic!("{c:?}")
        };
        assert!(r.public_only && !r.refer && !r.forward);
        assert_eq!((r.indexes, r.types), (vec![1], vec!["URL".to_string()]));

        let values = vec![HandleValue::new(1, "URL", b"u".to_vec())];
        let c = parsed(
            opcode::CREATE_HANDLE,
            flags::OVRW | flags::MINT,
            Body::HandleValues {
                handle: "88.888/".into(),
                values: values.clone(),
            },
        )
        .unwrap();
        assert!(matches!(
            c,
            Command::Create(Create {
                overwrite: true,
                mint: true,
                ..
            })
        ));
        let c = parsed(
            opcode::ADD_VALUE,
            0,
            Body::HandleValues {
                handle: "88.888/x".into(),
                values,
            },
        )
        .unwrap();
        assert!(matches!(
            c,
            Command::AddValues(AddValues {
                overwrite: false,
                ..
            })
        ));
        assert_eq!(c.opcode(), opcode::ADD_VALUE);
        let c = parsed(
            opcode::LIST_HOMED_NAS,
            0,
            Body::Handle { handle: "/".into() },
        )
        .unwrap();
        assert_eq!(c, Command::ListHomed);
    }

    #[test]
    fn a_body_the_operation_does_not_take_is_refused_with_the_reason() {
        let e = parsed(
            opcode::DELETE_HANDLE,
            0,
            Body::HandleValues {
                handle: "88.888/x".into(),
                values: Vec::new(),
            },
        )
        .unwrap_err();
        assert_eq!(e.0, rc::PROTOCOL_ERROR);
        let e = parsed(opcode::GET_SITE_INFO, 0, Body::Empty).unwrap_err();
        assert_eq!(e.0, rc::OPERATION_NOT_SUPPORTED);
    }
}
