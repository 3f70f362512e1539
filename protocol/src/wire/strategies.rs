//! proptest strategies producing every startup, frontend and backend message.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::backend::{BackendMessage, CopyResponse, FieldDescription, TransactionStatus};
use super::error_fields::ErrorFields;
use super::frontend::{FrontendMessage, Target};
use super::password::{self, SaslInitialResponse};
use super::startup::{StartupMessage, StartupPacket};
use super::Authentication;

/// A string without NUL (a C string's content).
pub(crate) fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,16}"
}

fn nonempty_text() -> impl Strategy<Value = String> {
    "[^\u{0}]{1,16}"
}

pub(crate) fn data() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn nullable() -> impl Strategy<Value = Option<Bytes>> {
    option::of(data())
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![Just(Target::Statement), Just(Target::Portal)]
}

fn bind() -> impl Strategy<Value = FrontendMessage> {
    (text(), text(), vec(any::<i16>(), 0..4), vec(nullable(), 0..4), vec(any::<i16>(), 0..4))
        .prop_map(|(portal, statement, param_formats, params, result_formats)| {
            FrontendMessage::Bind { portal, statement, param_formats, params, result_formats }
        })
}

fn function_call() -> impl Strategy<Value = FrontendMessage> {
    (any::<u32>(), vec(any::<i16>(), 0..4), vec(nullable(), 0..4), any::<i16>()).prop_map(
        |(function_oid, arg_formats, args, result_format)| FrontendMessage::FunctionCall {
            function_oid,
            arg_formats,
            args,
            result_format,
        },
    )
}

/// `p` messages of every kind.
fn password_kinds() -> impl Strategy<Value = FrontendMessage> {
    prop_oneof![
        "[^\u{0}]{1,16}".prop_map(|p| password::password(p.as_bytes())),
        ("[A-Z0-9-]{1,16}", nullable()).prop_map(|(mechanism, data)| SaslInitialResponse {
            mechanism,
            data
        }
        .to_message()),
        data().prop_map(password::sasl_response),
        data().prop_map(password::gss_response),
    ]
}

/// Every frontend message type.
pub(crate) fn frontend_message() -> impl Strategy<Value = FrontendMessage> {
    prop_oneof![
        text().prop_map(FrontendMessage::Query),
        (text(), text(), vec(any::<u32>(), 0..4)).prop_map(|(name, query, param_types)| {
            FrontendMessage::Parse { name, query, param_types }
        }),
        bind(),
        (text(), any::<i32>())
            .prop_map(|(portal, max_rows)| FrontendMessage::Execute { portal, max_rows }),
        (target(), text()).prop_map(|(target, name)| FrontendMessage::Describe { target, name }),
        (target(), text()).prop_map(|(target, name)| FrontendMessage::Close { target, name }),
        Just(FrontendMessage::Flush),
        Just(FrontendMessage::Sync),
        Just(FrontendMessage::Terminate),
        data().prop_map(FrontendMessage::CopyData),
        Just(FrontendMessage::CopyDone),
        text().prop_map(FrontendMessage::CopyFail),
        function_call(),
        password_kinds(),
    ]
}

fn authentication() -> impl Strategy<Value = Authentication> {
    prop_oneof![
        Just(Authentication::Ok),
        Just(Authentication::KerberosV5),
        Just(Authentication::CleartextPassword),
        any::<[u8; 4]>().prop_map(|salt| Authentication::Md5Password { salt }),
        Just(Authentication::Gss),
        data().prop_map(Authentication::GssContinue),
        Just(Authentication::Sspi),
        vec(nonempty_text(), 0..3).prop_map(|mechanisms| Authentication::Sasl { mechanisms }),
        data().prop_map(Authentication::SaslContinue),
        data().prop_map(Authentication::SaslFinal),
    ]
}

fn field_description() -> impl Strategy<Value = FieldDescription> {
    (text(), any::<u32>(), any::<i16>(), any::<u32>(), any::<i16>(), any::<i32>(), any::<i16>())
        .prop_map(|(name, table_oid, column_id, type_oid, type_size, type_modifier, format)| {
            FieldDescription {
                name,
                table_oid,
                column_id,
                type_oid,
                type_size,
                type_modifier,
                format,
            }
        })
}

/// Error or notice fields, with every optional field and unknown codes.
pub(crate) fn error_fields() -> impl Strategy<Value = ErrorFields> {
    let o = || option::of(text());
    let head = (text(), o(), text(), text(), o(), o(), o(), o(), o());
    let tail = (o(), o(), o(), o(), o(), o(), o(), o(), o());
    let other = vec((prop::sample::select(&b"abeEfgGiIjJ"[..]), text()), 0..3);
    (head, tail, other).prop_map(
        |((s, v, c, m, d, h, w, sc, t), (co, dt, n, p, ip, q, f, l, r), other)| ErrorFields {
            severity: s,
            severity_nonlocalized: v,
            code: c,
            message: m,
            detail: d,
            hint: h,
            context: w,
            schema: sc,
            table: t,
            column: co,
            datatype: dt,
            constraint: n,
            position: p,
            internal_position: ip,
            internal_query: q,
            file: f,
            line: l,
            routine: r,
            other,
        },
    )
}

fn copy_response() -> impl Strategy<Value = CopyResponse> {
    (any::<u8>(), vec(any::<i16>(), 0..4))
        .prop_map(|(format, column_formats)| CopyResponse { format, column_formats })
}

fn status() -> impl Strategy<Value = TransactionStatus> {
    prop_oneof![
        Just(TransactionStatus::Idle),
        Just(TransactionStatus::InTransaction),
        Just(TransactionStatus::Failed),
    ]
}

/// The backend messages postgres-protocol 0.6 also parses (all but `W`, `v` and `V`).
pub(crate) fn common_backend_message() -> impl Strategy<Value = BackendMessage> {
    prop_oneof![
        authentication().prop_map(BackendMessage::Authentication),
        (any::<i32>(), any::<u32>())
            .prop_map(|(pid, secret_key)| BackendMessage::BackendKeyData { pid, secret_key }),
        (text(), text()).prop_map(|(name, value)| BackendMessage::ParameterStatus { name, value }),
        status().prop_map(BackendMessage::ReadyForQuery),
        vec(field_description(), 0..4).prop_map(BackendMessage::RowDescription),
        vec(nullable(), 0..4).prop_map(BackendMessage::DataRow),
        text().prop_map(BackendMessage::CommandComplete),
        Just(BackendMessage::EmptyQueryResponse),
        error_fields().prop_map(BackendMessage::ErrorResponse),
        error_fields().prop_map(BackendMessage::NoticeResponse),
        Just(BackendMessage::ParseComplete),
        Just(BackendMessage::BindComplete),
        Just(BackendMessage::CloseComplete),
        Just(BackendMessage::NoData),
        Just(BackendMessage::PortalSuspended),
        vec(any::<u32>(), 0..4).prop_map(BackendMessage::ParameterDescription),
        copy_response().prop_map(BackendMessage::CopyInResponse),
        copy_response().prop_map(BackendMessage::CopyOutResponse),
        data().prop_map(BackendMessage::CopyData),
        Just(BackendMessage::CopyDone),
        (any::<i32>(), text(), text()).prop_map(|(pid, channel, payload)| {
            BackendMessage::NotificationResponse { pid, channel, payload }
        }),
    ]
}

/// Every backend message type.
pub(crate) fn backend_message() -> impl Strategy<Value = BackendMessage> {
    prop_oneof![
        4 => common_backend_message(),
        1 => copy_response().prop_map(BackendMessage::CopyBothResponse),
        1 => (any::<u32>(), vec(text(), 0..3)).prop_map(|(newest_version, unrecognized_options)| {
            BackendMessage::NegotiateProtocolVersion { newest_version, unrecognized_options }
        }),
        1 => nullable().prop_map(BackendMessage::FunctionCallResponse),
    ]
}

fn startup_message() -> impl Strategy<Value = StartupMessage> {
    let param = ("[a-z_.]{1,12}", text())
        .prop_filter("user and replication are placed separately", |(n, _)| {
            n != "user" && n != "replication"
        });
    let replication =
        option::of(prop::sample::select(vec!["true", "on", "1", "no", "database", "Yes"]));
    (any::<u16>(), vec(param, 0..4), nonempty_text(), any::<prop::sample::Index>(), replication)
        .prop_map(|(minor, mut params, user, at, replication)| {
            params.insert(at.index(params.len() + 1), ("user".into(), user));
            if let Some(r) = replication {
                params.push(("replication".into(), r.into()));
            }
            StartupMessage { version_major: 3, version_minor: minor, params }
        })
}

/// Every startup-phase packet.
pub(crate) fn startup_packet() -> impl Strategy<Value = StartupPacket> {
    prop_oneof![
        Just(StartupPacket::SslRequest),
        Just(StartupPacket::GssEncRequest),
        (any::<i32>(), any::<u32>())
            .prop_map(|(pid, key)| StartupPacket::CancelRequest { pid, key }),
        startup_message().prop_map(StartupPacket::Startup),
    ]
}
