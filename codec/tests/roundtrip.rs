//! Property tests: every message kind, value and typed view survives encode then decode, and
//! UDP split then reassembly in any order gives the message back.

use proptest::prelude::*;
use suyuan_codec::framing::{Reassembly, UdpReassembler, udp_split};
use suyuan_codec::message::{
    Body, Credential, DumpHandlesRequest, Envelope, Header, KeyExchange, Message, ReplicationState,
    RequestDigest, RetrieveTxnLogRequest, SessionSetupRequest, flags, opcode, rc, session_mode,
};
use suyuan_codec::site::{HashOption, Interface, ServerInfo, SiteAttribute, SiteInfo};
use suyuan_codec::value::{
    AdminRecord, HandleValue, Permissions, PublicKey, TtlType, ValueReference, decode_value_list,
    encode_value_list,
};

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9./_\\-溯源]{0,24}"
}

fn blob(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn reference() -> impl Strategy<Value = ValueReference> {
    (text(), any::<u32>()).prop_map(|(handle, index)| ValueReference { handle, index })
}

fn value() -> impl Strategy<Value = HandleValue> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<i32>(),
        any::<u8>(),
        text(),
        blob(64),
        prop::collection::vec(reference(), 0..3),
    )
        .prop_map(
            |(index, timestamp, ttl_type, ttl, perms, value_type, data, references)| HandleValue {
                index,
                timestamp,
                ttl_type: TtlType::from_u8(ttl_type),
                ttl,
                permissions: Permissions(perms),
                value_type,
                data,
                references,
            },
        )
}

fn site() -> impl Strategy<Value = SiteInfo> {
    let server = (
        any::<u32>(),
        any::<[u8; 16]>(),
        blob(40),
        prop::collection::vec((any::<u8>(), any::<u8>(), any::<u32>()), 0..4),
    )
        .prop_map(|(server_id, address, public_key, ifs)| ServerInfo {
            server_id,
            address,
            public_key,
            interfaces: ifs
                .into_iter()
                .map(|(kind, protocol, port)| Interface {
                    kind,
                    protocol,
                    port,
                })
                .collect(),
        });
    (
        any::<u16>(),
        any::<(u8, u8, u16, u8, u8)>(),
        text(),
        prop::collection::vec((text(), text()), 0..3),
        prop::collection::vec(server, 0..3),
    )
        .prop_map(
            |(v, (maj, min, serial, flags, hash), filter, attrs, servers)| SiteInfo {
                data_format_version: v,
                protocol_major: maj,
                protocol_minor: min,
                serial_number: serial,
                flags,
                hash_option: HashOption::from_u8(hash),
                hash_filter: filter,
                attributes: attrs
                    .into_iter()
                    .map(|(name, value)| SiteAttribute { name, value })
                    .collect(),
                servers,
            },
        )
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    prop_oneof![
        (blob(8), blob(64)).prop_map(|(e, n)| PublicKey::Rsa {
            flags: 0,
            exponent: e,
            modulus: n,
            trailer: vec![0; 4]
        }),
        (blob(8), blob(64)).prop_map(|(e, n)| PublicKey::Rsa {
            flags: 0,
            exponent: e,
            modulus: n,
            trailer: vec![]
        }),
        (blob(20), blob(64), blob(64), blob(64)).prop_map(|(q, p, g, y)| PublicKey::Dsa {
            flags: 0,
            q,
            p,
            g,
            y
        }),
        (blob(64), blob(64), blob(4)).prop_map(|(y, p, g)| PublicKey::Dh { flags: 0, y, p, g }),
    ]
}

fn request_body() -> impl Strategy<Value = (u32, Body)> {
    let vals = prop::collection::vec(value(), 0..4);
    let idx = prop::collection::vec(any::<u32>(), 0..4);
    prop_oneof![
        (text(), idx.clone(), prop::collection::vec(text(), 0..3)).prop_map(
            |(handle, indexes, types)| (
                opcode::RESOLUTION,
                Body::Resolution {
                    handle,
                    indexes,
                    types
                }
            )
        ),
        text().prop_map(|handle| (opcode::GET_SITE_INFO, Body::GetSiteInfo { handle })),
        (
            prop::sample::select(vec![
                opcode::CREATE_HANDLE,
                opcode::ADD_VALUE,
                opcode::MODIFY_VALUE
            ]),
            text(),
            vals
        )
            .prop_map(|(op, handle, values)| (op, Body::HandleValues { handle, values })),
        (text(), idx).prop_map(|(handle, indexes)| (
            opcode::REMOVE_VALUE,
            Body::RemoveValue { handle, indexes }
        )),
        (
            prop::sample::select(vec![
                opcode::DELETE_HANDLE,
                opcode::LIST_HANDLES,
                opcode::HOME_NA,
                opcode::UNHOME_NA,
                opcode::LIST_HOMED_NAS,
                opcode::SESSION_TERMINATE,
                opcode::GET_NEXT_TXN_ID,
                opcode::BACKUP_SERVER
            ]),
            text()
        )
            .prop_map(|(op, handle)| (op, Body::Handle { handle })),
        (text(), text(), any::<u32>(), blob(64)).prop_map(
            |(auth_type, id_handle, id_index, signed_response)| (
                opcode::CHALLENGE_RESPONSE,
                Body::ChallengeResponse {
                    auth_type,
                    id_handle,
                    id_index,
                    signed_response
                }
            )
        ),
        (text(), any::<u32>(), blob(16), blob(32), blob(64)).prop_map(
            |(handle, index, nonce, request_digest, signed_response)| (
                opcode::VERIFY_RESPONSE,
                Body::VerifyResponse {
                    handle,
                    index,
                    nonce,
                    request_digest,
                    signed_response
                }
            )
        ),
        (
            1u16..6,
            any::<u32>(),
            text(),
            any::<u32>(),
            blob(64),
            text(),
            any::<u32>()
        )
            .prop_map(|(mode, timeout, id_handle, id_index, key, kh, ki)| {
                let exchange = match mode {
                    session_mode::CIPHER_CLIENT | session_mode::DIFFIE_HELLMAN => {
                        KeyExchange::PublicKey(key)
                    }
                    session_mode::CIPHER_HDL => KeyExchange::KeyRef {
                        handle: kh,
                        index: ki,
                    },
                    _ => KeyExchange::None,
                };
                (
                    opcode::SESSION_SETUP,
                    Body::SessionSetup(SessionSetupRequest {
                        mode,
                        timeout,
                        id_handle,
                        id_index,
                        exchange,
                    }),
                )
            }),
        blob(64).prop_map(|encrypted_key| (
            opcode::SESSION_EXCHANGEKEY,
            Body::SessionExchangeKey { encrypted_key }
        )),
        (
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            text(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(json, txn_id, query_date, j, receiver_hash_type, num_servers, server_num)| {
                    let state = if json {
                        ReplicationState::Json(j)
                    } else {
                        ReplicationState::Last { txn_id, query_date }
                    };
                    (
                        opcode::RETRIEVE_TXN_LOG,
                        Body::RetrieveTxnLog(RetrieveTxnLogRequest {
                            state,
                            receiver_hash_type,
                            num_servers,
                            server_num,
                        }),
                    )
                }
            ),
        (
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            prop::option::of((blob(16), any::<u32>()))
        )
            .prop_map(|(hash_type, num_servers, server_num, resume)| (
                opcode::DUMP_HANDLES,
                Body::DumpHandles(DumpHandlesRequest {
                    hash_type,
                    num_servers,
                    server_num,
                    resume
                })
            )),
        (text(), any::<u32>()).prop_map(|(handle, index)| (
            opcode::LOGIN_ID_SYSTEM,
            Body::LoginIdSystem { handle, index }
        )),
    ]
}

fn response_body() -> impl Strategy<Value = (u32, u32, Body)> {
    prop_oneof![
        (text(), prop::collection::vec(value(), 0..4)).prop_map(|(handle, values)| (
            opcode::RESOLUTION,
            rc::SUCCESS,
            Body::ResolutionResponse { handle, values }
        )),
        site().prop_map(|s| (opcode::GET_SITE_INFO, rc::SUCCESS, Body::SiteInfo(s))),
        prop::option::of(text()).prop_map(|handle| (
            opcode::CREATE_HANDLE,
            rc::SUCCESS,
            Body::Created { handle }
        )),
        prop::collection::vec(text(), 0..5).prop_map(|handles| (
            opcode::LIST_HANDLES,
            rc::SUCCESS,
            Body::HandleList { handles }
        )),
        any::<u8>().prop_map(|valid| (
            opcode::VERIFY_RESPONSE,
            rc::SUCCESS,
            Body::VerifyResult { valid }
        )),
        (any::<u16>(), blob(64)).prop_map(|(mode, data)| (
            opcode::SESSION_SETUP,
            rc::SUCCESS,
            Body::SessionSetupResponse { mode, data }
        )),
        any::<u64>().prop_map(|txn_id| (
            opcode::GET_NEXT_TXN_ID,
            rc::SUCCESS,
            Body::NextTxnId { txn_id }
        )),
        blob(64).prop_map(|bytes| (opcode::DUMP_HANDLES, rc::SUCCESS, Body::Stream { bytes })),
        Just((opcode::DELETE_HANDLE, rc::SUCCESS, Body::Empty)),
        blob(16).prop_map(|nonce| (
            opcode::CREATE_HANDLE,
            rc::AUTHENTICATION_NEEDED,
            Body::Challenge { nonce }
        )),
        (
            text(),
            prop::option::of(prop::collection::vec(value(), 0..3))
        )
            .prop_map(|(handle, values)| (
                opcode::RESOLUTION,
                rc::PREFIX_REFERRAL,
                Body::Referral { handle, values }
            )),
        (
            prop::sample::select(vec![2u32, 100, 101, 200, 301, 403, 505, 603]),
            prop::option::of(text())
        )
            .prop_map(|(code, message)| (
                opcode::RESOLUTION,
                code,
                Body::Error { message }
            )),
    ]
}

fn credential() -> impl Strategy<Value = Option<Credential>> {
    prop::option::of(
        (
            any::<(u8, u8, u16)>(),
            text(),
            any::<u32>(),
            text(),
            text(),
            blob(64),
        )
            .prop_map(
                |(
                    (version, reserved, options),
                    signer_handle,
                    signer_index,
                    cred_type,
                    digest_alg,
                    signature,
                )| Credential {
                    version,
                    reserved,
                    options,
                    signer_handle,
                    signer_index,
                    cred_type,
                    digest_alg,
                    signature,
                },
            ),
    )
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (9u8..=11, any::<u8>(), 0u8..4, any::<(u32, u32)>()).prop_map(
        |(minor, flag_bits, sugg, (session_id, request_id))| Envelope {
            major: 2,
            minor,
            flags: flag_bits & 0xC0,
            suggested_major: 2,
            suggested_minor: 8 + sugg,
            session_id,
            request_id,
            sequence: 0,
            message_length: 0,
        },
    )
}

fn header(op_code: u32, response_code: u32, op_flags: u32) -> Header {
    Header {
        op_code,
        response_code,
        op_flags,
        site_info_serial: 0xFFFF,
        recursion_count: 0,
        reserved: 0,
        expiration: 1_795_554_056,
        body_length: 0,
    }
}

fn check(m: &Message) {
    let bytes = m.encode();
    let back = Message::decode(&bytes).unwrap_or_else(|e| panic!("{e}: {m:?}"));
    assert_eq!(back.body, m.body);
    assert_eq!(back.credential, m.credential);
    assert_eq!(back.request_digest, m.request_digest);
    assert_eq!(back.envelope.request_id, m.envelope.request_id);
    assert_eq!(back.encode(), bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn requests_round_trip(env in envelope(), (op, body) in request_body(), op_flags in any::<u32>(), cred in credential()) {
        let m = Message { envelope: env, header: header(op, 0, op_flags), request_digest: None, body, trailing: vec![], credential: cred };
        check(&m);
    }

    #[test]
    fn responses_round_trip(env in envelope(), (op, code, body) in response_body(), rd in any::<bool>(), digest in blob(64), cred in credential()) {
        // RC 402 always carries the request digest; others when RD is set.
        let with_digest = rd || code == rc::AUTHENTICATION_NEEDED;
        let request_digest = with_digest.then(|| RequestDigest::compute(3, &digest));
        let op_flags = if with_digest { flags::RD } else { 0 } | flags::AT;
        let m = Message { envelope: env, header: header(op, code, op_flags), request_digest, body, trailing: vec![], credential: cred };
        check(&m);
    }

    #[test]
    fn values_round_trip(v in value()) {
        prop_assert_eq!(HandleValue::decode(&v.encode()).unwrap(), v);
    }

    #[test]
    fn typed_views_round_trip(perms in any::<u16>(), h in text(), i in any::<u32>(), legacy in any::<bool>(),
                              refs in prop::collection::vec(reference(), 0..5), s in site(), k in public_key()) {
        let mut a = AdminRecord::new(perms, h, i);
        if legacy { a.legacy_trailer = Some([0, 0]); }
        prop_assert_eq!(AdminRecord::decode(&a.encode()).unwrap(), a);
        prop_assert_eq!(decode_value_list(&encode_value_list(&refs)).unwrap(), refs);
        prop_assert_eq!(SiteInfo::decode(&s.encode()).unwrap(), s);
        prop_assert_eq!(PublicKey::decode(&k.encode()).unwrap(), k);
    }

    #[test]
    fn udp_split_reassembles_in_any_order(handle_len in 0usize..3000, seed in any::<u64>()) {
        let m = Message::request(opcode::RESOLUTION, 0, 5, 0, Body::Resolution {
            handle: "x".repeat(handle_len), indexes: vec![], types: vec![],
        }).encode();
        let mut parts = udp_split(&m);
        // A seeded shuffle.
        let mut s = seed;
        for i in (1..parts.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            parts.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut r = UdpReassembler::new();
        let mut out = None;
        for p in &parts {
            prop_assert!(p.len() <= 512);
            if let Reassembly::Complete(b) = r.push(p).unwrap() { out = Some(b); }
        }
        prop_assert_eq!(out.unwrap(), m);
    }
}
