//! Client certificates on the server (`auth.c: ClientAuthentication`, `CheckCertAuth`):
//! what a rule with `clientcert` requires, and the `cert` method's name check.

use walstream_protocol::wire::{sqlstate, ErrorFields};

use super::AuthError;
use crate::hba::{AuthMethod, ClientCert, HbaRule};
use crate::tls_info::SslStatus;

/// A rule with `clientcert` needs a root store (`has_ca`) and a client certificate that
/// verified against it (the handshake refused one that did not).
///
/// # Errors
/// F0000 without a root store, 28000 without a certificate, with PostgreSQL's texts.
pub fn check_client_cert(
    rule: &HbaRule,
    has_ca: bool,
    ssl: Option<&SslStatus>,
) -> Result<(), AuthError> {
    if rule.clientcert == ClientCert::Off {
        return Ok(());
    }
    if !has_ca {
        return Err(AuthError::fatal(
            sqlstate::CONFIG_FILE_ERROR,
            "client certificates can only be checked if a root certificate store is available",
        ));
    }
    if ssl.and_then(|s| s.client_dn.as_ref()).is_none() {
        return Err(AuthError::fatal(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "connection requires a valid client certificate",
        ));
    }
    Ok(())
}

/// `auth.c: CheckCertAuth`: the certificate's CN (or DN, `clientname=DN`) is the user
/// name. The error is the rule's method's (`auth.c: auth_failed`), the log detail
/// PostgreSQL's.
///
/// # Errors
/// The method's failure when the names differ or the certificate has none.
pub fn cert_name_matches(
    rule: &HbaRule,
    ssl: Option<&SslStatus>,
    user: &str,
) -> Result<(), AuthError> {
    let name = ssl.and_then(|s| {
        if rule.clientname_dn {
            s.client_dn_rfc2253.as_deref()
        } else {
            s.client_cn.as_deref()
        }
    });
    let log_detail = match name {
        None | Some("") => Some("client certificate contains no user name".to_string()),
        Some(name) if name == user => return Ok(()),
        Some(name) => Some(format!(
            "provided user name ({user}) and authenticated user name ({name}) do not match"
        )),
    };
    let (code, message) = match rule.method {
        AuthMethod::Cert => (
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            format!("certificate authentication failed for user \"{user}\""),
        ),
        AuthMethod::Password | AuthMethod::Md5 | AuthMethod::ScramSha256 => (
            sqlstate::INVALID_PASSWORD,
            format!("password authentication failed for user \"{user}\""),
        ),
        AuthMethod::Trust | AuthMethod::Reject => (
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            format!("authentication failed for user \"{user}\": invalid authentication method"),
        ),
    };
    Err(AuthError { fields: Box::new(ErrorFields::fatal(code, message)), log_detail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hba::HbaFile;

    fn rule(line: &str) -> HbaRule {
        HbaFile::parse(line).unwrap().rules()[0].clone()
    }

    fn ssl(cn: &str) -> SslStatus {
        SslStatus {
            client_cn: Some(cn.into()),
            client_dn: Some(format!("/CN={cn}")),
            client_dn_rfc2253: Some(format!("CN={cn}")),
            ..SslStatus::default()
        }
    }

    #[test]
    fn clientcert_needs_a_root_store_and_a_certificate() {
        let r = rule("hostssl all all all trust clientcert=verify-ca");
        let e = check_client_cert(&r, false, Some(&ssl("u"))).unwrap_err();
        assert_eq!(e.fields.code, "F0000");
        let e = check_client_cert(&r, true, Some(&SslStatus::default())).unwrap_err();
        assert_eq!(e.fields.message, "connection requires a valid client certificate");
        assert!(check_client_cert(&r, true, Some(&ssl("u"))).is_ok());
        assert!(check_client_cert(&rule("hostssl all all all trust"), false, None).is_ok());
    }

    #[test]
    fn a_name_mismatch_fails_as_the_method_fails() {
        let cert = rule("hostssl all all all cert");
        assert!(cert_name_matches(&cert, Some(&ssl("u")), "u").is_ok());
        let e = cert_name_matches(&cert, Some(&ssl("alice")), "u").unwrap_err();
        assert_eq!(e.fields.message, "certificate authentication failed for user \"u\"");
        let full = rule("hostssl all all all scram-sha-256 clientcert=verify-full");
        let e = cert_name_matches(&full, Some(&ssl("alice")), "u").unwrap_err();
        assert_eq!(
            (e.fields.code.as_str(), e.fields.message.as_str()),
            ("28P01", "password authentication failed for user \"u\"")
        );
        let trust = rule("hostssl all all all trust clientcert=verify-full");
        let e = cert_name_matches(&trust, Some(&ssl("alice")), "u").unwrap_err();
        assert_eq!(
            e.fields.message,
            "authentication failed for user \"u\": invalid authentication method"
        );
        let dn = rule("hostssl all all all cert clientname=DN");
        assert!(cert_name_matches(&dn, Some(&ssl("u")), "CN=u").is_ok());
    }
}
