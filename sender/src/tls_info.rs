//! What PostgreSQL reports of an encrypted connection (`be-secure-openssl.c`:
//! `be_tls_get_version`, `_cipher`, `_cipher_bits`, `_peer_subject_name`,
//! `_peer_issuer_name`, `_peer_serial`), read from a rustls
//! connection and X.509 certificates, in OpenSSL's spellings.

use tokio_rustls::rustls::{self, CipherSuite, ProtocolVersion};
use x509_parser::prelude::{FromDer, X509Certificate};

/// One encrypted connection, as `pg_stat_ssl` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslStatus {
    /// `TLSv1.3`.
    pub version: String,
    /// OpenSSL's name of the cipher suite (`TLS_AES_256_GCM_SHA384`).
    pub cipher: String,
    /// The cipher's key bits.
    pub bits: i32,
    /// The client certificate's subject (`/CN=alice`), when one was sent.
    pub client_dn: Option<String>,
    /// Its serial number in decimal.
    pub client_serial: Option<String>,
    /// Its issuer.
    pub issuer_dn: Option<String>,
    /// Its subject's common name (what `cert` authentication and `clientcert=verify-full`
    /// compare with the user name).
    pub client_cn: Option<String>,
    /// Its subject in RFC 2253 form (`CN=alice,O=Example`), what `clientname=DN` compares.
    pub client_dn_rfc2253: Option<String>,
}

impl SslStatus {
    /// What a rustls server connection negotiated.
    pub fn of(conn: &rustls::ServerConnection) -> SslStatus {
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        };
        let (cipher, bits) = conn
            .negotiated_cipher_suite()
            .map_or((String::new(), 0), |s| openssl_cipher(s.suite()));
        let mut status =
            SslStatus { version: version.to_string(), cipher, bits, ..SslStatus::default() };
        if let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) {
            if let Ok((_, x)) = X509Certificate::from_der(cert.as_ref()) {
                status.client_dn = Some(name_to_cstring(x.subject()));
                status.issuer_dn = Some(name_to_cstring(x.issuer()));
                status.client_serial = Some(x.serial.to_string());
                status.client_dn_rfc2253 = Some(name_to_rfc2253(x.subject()));
                status.client_cn = x
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .map(str::to_string);
            }
        }
        status
    }
}

/// OpenSSL's name and key bits of a cipher suite (`SSL_get_cipher`, `SSL_get_cipher_bits`).
fn openssl_cipher(suite: CipherSuite) -> (String, i32) {
    let (name, bits) = match suite {
        CipherSuite::TLS13_AES_256_GCM_SHA384 => ("TLS_AES_256_GCM_SHA384", 256),
        CipherSuite::TLS13_AES_128_GCM_SHA256 => ("TLS_AES_128_GCM_SHA256", 128),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => ("TLS_CHACHA20_POLY1305_SHA256", 256),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => {
            ("ECDHE-ECDSA-AES256-GCM-SHA384", 256)
        }
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => {
            ("ECDHE-ECDSA-AES128-GCM-SHA256", 128)
        }
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            ("ECDHE-ECDSA-CHACHA20-POLY1305", 256)
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-RSA-AES256-GCM-SHA384", 256),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-RSA-AES128-GCM-SHA256", 128),
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => {
            ("ECDHE-RSA-CHACHA20-POLY1305", 256)
        }
        other => return (format!("{other:?}"), 0),
    };
    (name.to_string(), bits)
}

/// `X509_NAME_to_cstring`: `/SN=value` for each entry, values escaped as RFC 2253 escapes
/// them.
pub fn name_to_cstring(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut out = String::new();
    for (short, value) in name_entries(name) {
        out.push('/');
        out.push_str(&short);
        out.push('=');
        out.push_str(&value);
    }
    out
}

/// `X509_NAME_print_ex(XN_FLAG_RFC2253)`: the entries last first, `SN=value` joined by
/// commas (`be-secure-openssl.c`, for `clientname=DN`).
pub fn name_to_rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut entries = name_entries(name);
    entries.reverse();
    entries.into_iter().map(|(sn, v)| format!("{sn}={v}")).collect::<Vec<_>>().join(",")
}

/// Each entry's short name and its value escaped as RFC 2253 escapes it.
fn name_entries(name: &x509_parser::x509::X509Name<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rdn in name.iter() {
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            let id = oid.to_id_string();
            let short = openssl_short_name(&id).map_or(id, str::to_string);
            let value = attr.as_str().unwrap_or_default();
            let n = value.chars().count();
            let mut escaped = String::with_capacity(value.len());
            for (i, c) in value.chars().enumerate() {
                let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                    || (i == 0 && (c == '#' || c == ' '))
                    || (i + 1 == n && c == ' ');
                if special {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            out.push((short, escaped));
        }
    }
    out
}

/// OpenSSL's short name of a name attribute (`OBJ_nid2sn`), for the usual ones.
fn openssl_short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return None,
    })
}
