//! Client-side sessions (OC 400): set one up in any of the four key-exchange modes, then send
//! requests in it with an HS_MAC on each (a fresh counter every time), answering the one
//! challenge that authenticates the session.

use std::sync::atomic::{AtomicU32, Ordering};

use rsa::{RsaPrivateKey, RsaPublicKey};
use suyuan_codec::auth::{hs_from_rsa_public, mac_message};
use suyuan_codec::message::{
    Body, KeyExchange, Message, SessionSetupRequest, flags, opcode, rc, session_mode,
};
use suyuan_codec::session::{
    DhKeyPair, alg, parse_dh_response_data, unwrap_session_key, wrap_session_key,
};
use suyuan_codec::value::PublicKey;

use crate::client::{ClientError, Credentials, HandleClient, KeptConnection};

/// An established session.
#[derive(Debug)]
pub struct ClientSession {
    pub id: u32,
    key: Vec<u8>,
    counter: AtomicU32,
}

impl ClientSession {
    /// The next message counter (each message of a session carries a new one).
    pub fn next_counter(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

/// How to agree the session key.
#[derive(Debug)]
pub enum Exchange<'a> {
    /// Mode 4, GenericBatch's default.
    DiffieHellman,
    /// Mode 1: the server wraps the key for our RSA key.
    ClientCipher(&'a RsaPrivateKey),
    /// Mode 3: as mode 1, with our public key at `handle:index`.
    HandleCipher {
        handle: &'a str,
        index: u32,
        key: &'a RsaPrivateKey,
    },
    /// Mode 2: we wrap a key of our own for the server's RSA key.
    ServerCipher,
}

/// RFC 2409's 1024-bit group 2, the one GenericBatch offers.
const DH_P: &str = "00ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7edee386bfb5a899fa5ae9f24117c4b1fe649286651ece65381ffffffffffffffff";

impl HandleClient {
    /// Sets up a session for `identity` (`index:handle`) over TCP.
    pub async fn open_session(
        &self,
        id_index: u32,
        id_handle: &str,
        exchange: Exchange<'_>,
        timeout_secs: u32,
    ) -> Result<ClientSession, ClientError> {
        let addr = self.server();
        let fail = |why: String| ClientError::Auth { addr, why };
        let mut rng = rand::rngs::OsRng;
        let mut dh = None;
        let (mode, ex) = match &exchange {
            Exchange::DiffieHellman => {
                let p = hex_decode(DH_P);
                let pair = DhKeyPair::new(&p, &[2], &mut rng).map_err(|e| fail(e.to_string()))?;
                let bytes = pair.public.encode();
                dh = Some(pair);
                (session_mode::DIFFIE_HELLMAN, KeyExchange::PublicKey(bytes))
            }
            Exchange::ClientCipher(k) => (
                session_mode::CIPHER_CLIENT,
                KeyExchange::PublicKey(hs_from_rsa_public(&k.to_public_key()).encode()),
            ),
            Exchange::HandleCipher { handle, index, .. } => (
                session_mode::CIPHER_HDL,
                KeyExchange::KeyRef {
                    handle: handle.to_string(),
                    index: *index,
                },
            ),
            Exchange::ServerCipher => (session_mode::CIPHER_SERVER, KeyExchange::None),
        };
        let setup = Message::request(
            opcode::SESSION_SETUP,
            flags::CLIENT_DEFAULT | flags::CT | flags::RD,
            self.next_request_id(),
            0,
            Body::SessionSetup(SessionSetupRequest {
                mode,
                timeout: timeout_secs,
                id_handle: id_handle.to_string(),
                id_index,
                exchange: ex,
            }),
        );
        let answer = self.send_tcp(&setup).await?.remove(0);
        if answer.header.response_code != rc::SUCCESS {
            return Err(fail(format!(
                "session setup refused: RC {} {:?}",
                answer.header.response_code, answer.body
            )));
        }
        let Body::SessionSetupResponse { data, .. } = &answer.body else {
            return Err(fail("not a session setup answer".into()));
        };
        let id = answer.envelope.session_id;
        let key = match exchange {
            Exchange::DiffieHellman => {
                let (_, server) = parse_dh_response_data(data).map_err(|e| fail(e.to_string()))?;
                dh.as_ref()
                    .map(|d| d.session_key(&server))
                    .transpose()
                    .map_err(|e| fail(e.to_string()))?
                    .unwrap_or_default()
            }
            Exchange::ClientCipher(k) | Exchange::HandleCipher { key: k, .. } => {
                unwrap_session_key(k, data)
                    .map_err(|e| fail(e.to_string()))?
                    .1
            }
            Exchange::ServerCipher => {
                let server: RsaPublicKey = PublicKey::decode(data)
                    .ok()
                    .and_then(|k| suyuan_codec::auth::rsa_public_from_hs(&k).ok())
                    .ok_or_else(|| fail("the server sent no RSA key".into()))?;
                let mut key = vec![0u8; 16];
                rand::RngCore::fill_bytes(&mut rng, &mut key);
                let wrapped = wrap_session_key(&server, alg::AES, &key, &mut rng)
                    .map_err(|e| fail(e.to_string()))?;
                let mut m = Message::request(
                    opcode::SESSION_EXCHANGEKEY,
                    flags::CLIENT_DEFAULT,
                    self.next_request_id(),
                    0,
                    Body::SessionExchangeKey {
                        encrypted_key: wrapped,
                    },
                );
                m.envelope.session_id = id;
                let r = self.send_tcp(&m).await?.remove(0);
                if r.header.response_code != rc::SUCCESS {
                    return Err(fail(format!(
                        "key exchange refused: RC {}",
                        r.header.response_code
                    )));
                }
                key
            }
        };
        Ok(ClientSession {
            id,
            key,
            counter: AtomicU32::new(1),
        })
    }

    /// Sends `request` in `session` with an HS_MAC; a 402 (the session's first administrative
    /// request) is answered as `creds`.
    pub async fn send_in_session(
        &self,
        session: &ClientSession,
        request: &Message,
        creds: &Credentials,
    ) -> Result<Vec<Message>, ClientError> {
        let m = self.in_session(session, request, 0)?;
        self.answer_if_challenged(&m, creds).await
    }

    /// `request` as sent in `session`: its id, `extra_flags`, and an HS_MAC with a fresh
    /// counter.
    fn in_session(
        &self,
        session: &ClientSession,
        request: &Message,
        extra_flags: u32,
    ) -> Result<Message, ClientError> {
        let mut m = request.clone();
        m.header.op_flags |= extra_flags;
        m.envelope.session_id = session.id;
        mac_message(&mut m, &session.key, session.next_counter()).map_err(|e| {
            ClientError::Auth {
                addr: self.server(),
                why: e.to_string(),
            }
        })?;
        Ok(m)
    }

    /// As [`HandleClient::send_in_session`], over a kept connection (KC is set here). A
    /// challenge is answered on a new connection, as the reference client does.
    pub async fn send_in_session_kept(
        &self,
        conn: &mut KeptConnection,
        session: &ClientSession,
        request: &Message,
        creds: &Credentials,
    ) -> Result<Vec<Message>, ClientError> {
        let m = self.in_session(session, request, flags::KC)?;
        let answers = conn.exchange(&m).await?;
        self.answer_challenge(&m, answers, creds).await
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect()
}
