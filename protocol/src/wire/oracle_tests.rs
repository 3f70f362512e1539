//! postgres-protocol as an oracle: bytes from its frontend encoders parse with ours to the
//! same values, and bytes from our backend encoders parse with its `Message::parse`.

use bytes::{Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ErrorFields as TheirFields, Message};
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use proptest::collection::vec;
use proptest::prelude::*;

use super::strategies::{common_backend_message, data, text};
use super::{
    parse_frontend, parse_startup, Authentication, BackendMessage, ErrorFields, FrontendMessage,
    MessageLimits, StartupMessage, StartupPacket, Target,
};

fn ours(buf: &mut BytesMut) -> FrontendMessage {
    let m = parse_frontend(buf, &MessageLimits::default()).unwrap().unwrap();
    assert!(buf.is_empty());
    m
}

proptest! {
    #[test]
    fn their_simple_frontend_messages(q in text(), name in text(), d in data(), oids in vec(any::<u32>(), 0..4), rows in any::<i32>()) {
        let mut b = BytesMut::new();
        frontend::query(&q, &mut b).unwrap();
        prop_assert_eq!(ours(&mut b), FrontendMessage::Query(q.clone()));
        frontend::parse(&name, &q, oids.clone(), &mut b).unwrap();
        prop_assert_eq!(ours(&mut b), FrontendMessage::Parse { name: name.clone(), query: q.clone(), param_types: oids });
        frontend::execute(&name, rows, &mut b).unwrap();
        prop_assert_eq!(ours(&mut b), FrontendMessage::Execute { portal: name.clone(), max_rows: rows });
        frontend::describe(b'S', &name, &mut b).unwrap();
        prop_assert_eq!(ours(&mut b), FrontendMessage::Describe { target: Target::Statement, name: name.clone() });
        frontend::close(b'P', &name, &mut b).unwrap();
        prop_assert_eq!(ours(&mut b), FrontendMessage::Close { target: Target::Portal, name: name.clone() });
        frontend::copy_fail(&q, &mut b).unwrap();
        prop_assert_eq!(ours(&mut b), FrontendMessage::CopyFail(q.clone()));
        frontend::CopyData::new(d.clone()).unwrap().write(&mut b);
        prop_assert_eq!(ours(&mut b), FrontendMessage::CopyData(d.clone()));
        frontend::sasl_response(&d, &mut b).unwrap();
        prop_assert_eq!(ours(&mut b), FrontendMessage::Password(d.clone()));
    }

    #[test]
    fn their_bind(portal in text(), stmt in text(), formats in vec(any::<i16>(), 0..4), values in vec(proptest::option::of(data()), 0..4), results in vec(any::<i16>(), 0..4)) {
        let mut b = BytesMut::new();
        let serialize = |v: &Option<Bytes>, out: &mut BytesMut| match v {
            None => Ok(IsNull::Yes),
            Some(v) => { out.extend_from_slice(v); Ok(IsNull::No) }
        };
        let bound = frontend::bind(&portal, &stmt, formats.clone(), &values, serialize, results.clone(), &mut b);
        prop_assert!(bound.is_ok());
        prop_assert_eq!(ours(&mut b), FrontendMessage::Bind {
            portal, statement: stmt, param_formats: formats, params: values, result_formats: results,
        });
    }

    #[test]
    fn their_password_messages(pw in "[^\u{0}]{1,16}", mech in "[A-Z0-9-]{1,16}", d in data()) {
        let mut b = BytesMut::new();
        frontend::password_message(pw.as_bytes(), &mut b).unwrap();
        let FrontendMessage::Password(body) = ours(&mut b) else { panic!("not p") };
        prop_assert_eq!(&super::password::parse_password(&body).unwrap()[..], pw.as_bytes());
        frontend::sasl_initial_response(&mech, &d, &mut b).unwrap();
        let FrontendMessage::Password(body) = ours(&mut b) else { panic!("not p") };
        let r = super::SaslInitialResponse::parse(&body).unwrap();
        prop_assert_eq!(r.mechanism, mech);
        prop_assert_eq!(r.data, Some(d));
    }

    #[test]
    fn their_startup_packets(params in vec(("[a-z_]{1,10}", text()), 0..4), user in "[a-z]{1,8}", pid in any::<i32>(), key in any::<i32>()) {
        let mut b = BytesMut::new();
        let mut all: Vec<(String, String)> = vec![("user".into(), user)];
        all.extend(params.into_iter().filter(|(n, _)| n != "user" && n != "replication"));
        frontend::startup_message(all.iter().map(|(n, v)| (n.as_str(), v.as_str())), &mut b).unwrap();
        prop_assert_eq!(parse_startup(&mut b).unwrap(), Some(StartupPacket::Startup(StartupMessage::new(all))));
        frontend::ssl_request(&mut b);
        prop_assert_eq!(parse_startup(&mut b).unwrap(), Some(StartupPacket::SslRequest));
        frontend::cancel_request(pid, key, &mut b);
        prop_assert_eq!(parse_startup(&mut b).unwrap(), Some(StartupPacket::CancelRequest { pid, key: key as u32 }));
        prop_assert!(b.is_empty());
    }

    #[test]
    fn our_backend_messages_parse_with_theirs(m in common_backend_message()) {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        let theirs = Message::parse(&mut b).unwrap().unwrap();
        prop_assert!(b.is_empty());
        check(&m, theirs)?;
    }
}

#[test]
fn their_empty_messages() {
    let mut b = BytesMut::new();
    frontend::sync(&mut b);
    frontend::flush(&mut b);
    frontend::terminate(&mut b);
    frontend::copy_done(&mut b);
    for want in [
        FrontendMessage::Sync,
        FrontendMessage::Flush,
        FrontendMessage::Terminate,
        FrontendMessage::CopyDone,
    ] {
        assert_eq!(parse_frontend(&mut b, &MessageLimits::default()).unwrap(), Some(want));
    }
}

fn check(ours: &BackendMessage, theirs: Message) -> Result<(), TestCaseError> {
    use BackendMessage as B;
    match (ours, theirs) {
        (B::Authentication(a), t) => check_auth(a, t)?,
        (B::BackendKeyData { pid, secret_key }, Message::BackendKeyData(t)) => {
            prop_assert_eq!((*pid, *secret_key), (t.process_id(), t.secret_key() as u32));
        }
        (B::ParameterStatus { name, value }, Message::ParameterStatus(t)) => {
            prop_assert_eq!(
                (name.as_str(), value.as_str()),
                (t.name().unwrap(), t.value().unwrap())
            );
        }
        (B::ReadyForQuery(s), Message::ReadyForQuery(t)) => prop_assert_eq!(s.byte(), t.status()),
        (B::RowDescription(fields), Message::RowDescription(t)) => {
            let theirs: Vec<_> = t.fields().collect().unwrap();
            prop_assert_eq!(fields.len(), theirs.len());
            for (f, t) in fields.iter().zip(theirs) {
                prop_assert_eq!(
                    (
                        f.name.as_str(),
                        f.table_oid,
                        f.column_id,
                        f.type_oid,
                        f.type_size,
                        f.type_modifier,
                        f.format
                    ),
                    (
                        t.name(),
                        t.table_oid(),
                        t.column_id(),
                        t.type_oid(),
                        t.type_size(),
                        t.type_modifier(),
                        t.format()
                    )
                );
            }
        }
        (B::DataRow(cols), Message::DataRow(t)) => {
            let buf = t.buffer();
            let theirs: Vec<_> = t.ranges().collect().unwrap();
            let theirs: Vec<Option<&[u8]>> =
                theirs.into_iter().map(|r| r.map(|r| &buf[r])).collect();
            let ours: Vec<Option<&[u8]>> = cols.iter().map(Option::as_deref).collect();
            prop_assert_eq!(ours, theirs);
        }
        (B::CommandComplete(tag), Message::CommandComplete(t)) => {
            prop_assert_eq!(tag.as_str(), t.tag().unwrap())
        }
        (B::ErrorResponse(f), Message::ErrorResponse(t)) => check_fields(f, t.fields())?,
        (B::NoticeResponse(f), Message::NoticeResponse(t)) => check_fields(f, t.fields())?,
        (B::ParameterDescription(oids), Message::ParameterDescription(t)) => {
            let theirs: Vec<u32> = t.parameters().collect().unwrap();
            prop_assert_eq!(oids, &theirs);
        }
        (B::CopyInResponse(c), Message::CopyInResponse(t)) => {
            let theirs: Vec<i16> = t.column_formats().map(|f| Ok(f as i16)).collect().unwrap();
            prop_assert_eq!((c.format, &c.column_formats), (t.format(), &theirs));
        }
        (B::CopyOutResponse(c), Message::CopyOutResponse(t)) => {
            let theirs: Vec<i16> = t.column_formats().map(|f| Ok(f as i16)).collect().unwrap();
            prop_assert_eq!((c.format, &c.column_formats), (t.format(), &theirs));
        }
        (B::CopyData(d), Message::CopyData(t)) => prop_assert_eq!(&d[..], t.data()),
        (B::NotificationResponse { pid, channel, payload }, Message::NotificationResponse(t)) => {
            prop_assert_eq!(
                (*pid, channel.as_str(), payload.as_str()),
                (t.process_id(), t.channel().unwrap(), t.message().unwrap())
            );
        }
        (B::EmptyQueryResponse, Message::EmptyQueryResponse)
        | (B::ParseComplete, Message::ParseComplete)
        | (B::BindComplete, Message::BindComplete)
        | (B::CloseComplete, Message::CloseComplete)
        | (B::NoData, Message::NoData)
        | (B::PortalSuspended, Message::PortalSuspended)
        | (B::CopyDone, Message::CopyDone) => {}
        (ours, _) => prop_assert!(false, "postgres-protocol read {ours:?} as another message"),
    }
    Ok(())
}

fn check_auth(ours: &Authentication, theirs: Message) -> Result<(), TestCaseError> {
    match (ours, theirs) {
        (Authentication::Md5Password { salt }, Message::AuthenticationMd5Password(t)) => {
            prop_assert_eq!(*salt, t.salt());
        }
        (Authentication::Sasl { mechanisms }, Message::AuthenticationSasl(t)) => {
            let theirs: Vec<&str> = t.mechanisms().collect().unwrap();
            prop_assert_eq!(mechanisms, &theirs);
        }
        (Authentication::GssContinue(d), Message::AuthenticationGssContinue(t)) => {
            prop_assert_eq!(&d[..], t.data());
        }
        (Authentication::SaslContinue(d), Message::AuthenticationSaslContinue(t)) => {
            prop_assert_eq!(&d[..], t.data());
        }
        (Authentication::SaslFinal(d), Message::AuthenticationSaslFinal(t)) => {
            prop_assert_eq!(&d[..], t.data());
        }
        (Authentication::Ok, Message::AuthenticationOk)
        | (Authentication::KerberosV5, Message::AuthenticationKerberosV5)
        | (Authentication::CleartextPassword, Message::AuthenticationCleartextPassword)
        | (Authentication::Gss, Message::AuthenticationGss)
        | (Authentication::Sspi, Message::AuthenticationSspi) => {}
        (ours, _) => prop_assert!(false, "postgres-protocol read {ours:?} as another message"),
    }
    Ok(())
}

/// Their field iterator yields fields in wire order: compare with what ours wrote.
fn check_fields(ours: &ErrorFields, mut theirs: TheirFields<'_>) -> Result<(), TestCaseError> {
    let mut body = BytesMut::new();
    ours.encode_body(&mut body);
    let mut expected = Vec::new();
    let mut rest = &body[..];
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap();
        expected.push((code, String::from_utf8(tail[..end].to_vec()).unwrap()));
        rest = &tail[end + 1..];
    }
    let mut got = Vec::new();
    while let Some(f) = theirs.next().unwrap() {
        got.push((f.type_(), String::from_utf8(f.value_bytes().to_vec()).unwrap()));
    }
    prop_assert_eq!(expected, got);
    Ok(())
}
