//! One tokenized pg_hba.conf line into an [`HbaRule`] (`libpq/hba.c: parse_hba_line`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::tokenize::{HbaToken, TokenizedLine};
use super::{AddrMatch, AuthMethod, ClientCert, ConnType, HbaRule};

/// A line's fault: PostgreSQL's message and, where it has one, its hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LineError {
    pub message: String,
    pub hint: Option<&'static str>,
}

impl LineError {
    fn new(message: impl Into<String>) -> LineError {
        LineError { message: message.into(), hint: None }
    }

    fn with_hint(message: impl Into<String>, hint: &'static str) -> LineError {
        LineError { message: message.into(), hint: Some(hint) }
    }
}

/// Walks a line's fields in order.
struct Fields<'a> {
    fields: std::slice::Iter<'a, Vec<HbaToken>>,
}

impl<'a> Fields<'a> {
    /// The next field, or PostgreSQL's `end-of-line before ...` error.
    fn next_or(&mut self, what: &str) -> Result<&'a [HbaToken], LineError> {
        self.fields
            .next()
            .map(Vec::as_slice)
            .ok_or_else(|| LineError::new(format!("end-of-line before {what}")))
    }
}

/// The one token of a field that takes a single value.
fn single<'a>(
    tokens: &'a [HbaToken],
    message: &str,
    hint: Option<&'static str>,
) -> Result<&'a HbaToken, LineError> {
    match tokens {
        [one] => Ok(one),
        _ => Err(LineError { message: message.to_owned(), hint }),
    }
}

/// Parses one line (`hba.c: parse_hba_line`).
pub(super) fn parse_line(line: &TokenizedLine) -> Result<HbaRule, LineError> {
    let mut fields = Fields { fields: line.fields.iter() };
    let conn_type = parse_conn_type(fields.next_or("connection type")?)?;
    let databases = fields.next_or("database specification")?.to_vec();
    let users = fields.next_or("role specification")?.to_vec();
    let address = match conn_type {
        ConnType::Local => None,
        _ => Some(parse_address(&mut fields)?),
    };
    let method_field = fields.next_or("authentication method")?;
    let method_token = single(
        method_field,
        "multiple values specified for authentication type",
        Some("Specify exactly one authentication type per line."),
    )?;
    let method = parse_method(&method_token.text)?;
    if method == AuthMethod::Cert && conn_type != ConnType::HostSsl {
        return Err(LineError::new("cert authentication is only supported on hostssl connections"));
    }
    let (mut clientcert, mut clientname_dn) = (ClientCert::Off, false);
    let mut options = Vec::new();
    for token in fields.fields.flatten() {
        // hba.c: parse_hba_line, "Parse remaining arguments"
        let Some((name, value)) = token.text.split_once('=') else {
            return Err(LineError::new(format!(
                "authentication option not in name=value format: {}",
                token.text
            )));
        };
        check_option(name, conn_type)?;
        // hba.c: parse_hba_auth_opt
        match name {
            "clientcert" => clientcert = parse_clientcert(value, method)?,
            "clientname" => {
                clientname_dn = match value {
                    "CN" => false,
                    "DN" => true,
                    _ => {
                        return Err(LineError::new(format!(
                            "invalid value for clientname: \"{value}\""
                        )))
                    }
                }
            }
            _ => {}
        }
        options.push((name.to_owned(), value.to_owned()));
    }
    Ok(HbaRule {
        line_number: line.line_number,
        raw_line: line.raw.clone(),
        conn_type,
        databases,
        users,
        address,
        method,
        options,
        clientcert: if method == AuthMethod::Cert { ClientCert::VerifyFull } else { clientcert },
        clientname_dn,
    })
}

/// `clientcert=verify-ca|verify-full` (`hba.c: parse_hba_auth_opt`).
fn parse_clientcert(value: &str, method: AuthMethod) -> Result<ClientCert, LineError> {
    match value {
        "verify-full" => Ok(ClientCert::VerifyFull),
        "verify-ca" if method == AuthMethod::Cert => Err(LineError::new(
            "clientcert only accepts \"verify-full\" when using \"cert\" authentication",
        )),
        "verify-ca" => Ok(ClientCert::VerifyCa),
        _ => Err(LineError::new(format!("invalid value for clientcert: \"{value}\""))),
    }
}

/// Refuses an option PostgreSQL would refuse on a rule using one of walstream's methods
/// (`hba.c: parse_hba_auth_opt`); values are not checked.
fn check_option(name: &str, conn_type: ConnType) -> Result<(), LineError> {
    let only_for = match name {
        "clientcert" | "clientname" => {
            if conn_type == ConnType::HostSsl {
                return Ok(());
            }
            return Err(LineError::new(format!(
                "{name} can only be configured for \"hostssl\" rows"
            )));
        }
        "map" => "ident, peer, gssapi, sspi, and cert",
        "krb_realm" | "include_realm" => "gssapi and sspi",
        "compat_realm" | "upn_username" => "sspi",
        "pamservice" | "pam_use_hostname" => "pam",
        n if n.starts_with("ldap") && LDAP_OPTIONS.contains(&n) => "ldap",
        "radiusservers" | "radiusports" | "radiussecrets" | "radiusidentifiers" => "radius",
        _ => {
            return Err(LineError::new(format!(
                "unrecognized authentication option name: \"{name}\""
            )))
        }
    };
    Err(LineError::new(format!(
        "authentication option \"{name}\" is only valid for authentication methods {only_for}"
    )))
}

const LDAP_OPTIONS: [&str; 12] = [
    "ldapurl",
    "ldaptls",
    "ldapscheme",
    "ldapserver",
    "ldapport",
    "ldapbinddn",
    "ldapbindpasswd",
    "ldapsearchattribute",
    "ldapsearchfilter",
    "ldapbasedn",
    "ldapprefix",
    "ldapsuffix",
];

fn parse_conn_type(tokens: &[HbaToken]) -> Result<ConnType, LineError> {
    let token = single(
        tokens,
        "multiple values specified for connection type",
        Some("Specify exactly one connection type per line."),
    )?;
    match token.text.as_str() {
        "local" => Ok(ConnType::Local),
        "host" => Ok(ConnType::Host),
        "hostssl" => Ok(ConnType::HostSsl),
        "hostnossl" => Ok(ConnType::HostNoSsl),
        "hostgssenc" => Ok(ConnType::HostGssEnc),
        "hostnogssenc" => Ok(ConnType::HostNoGssEnc),
        other => Err(LineError::new(format!("invalid connection type \"{other}\""))),
    }
}

/// The method name; the methods walstream does not implement get PostgreSQL's text for a
/// build without them.
fn parse_method(name: &str) -> Result<AuthMethod, LineError> {
    match name {
        "trust" => Ok(AuthMethod::Trust),
        "reject" => Ok(AuthMethod::Reject),
        "password" => Ok(AuthMethod::Password),
        "md5" => Ok(AuthMethod::Md5),
        "scram-sha-256" => Ok(AuthMethod::ScramSha256),
        "cert" => Ok(AuthMethod::Cert),
        "ident" | "peer" | "gss" | "sspi" | "pam" | "bsd" | "ldap" | "radius" => {
            Err(LineError::new(format!(
                "invalid authentication method \"{name}\": not supported by this build"
            )))
        }
        _ => Err(LineError::new(format!("invalid authentication method \"{name}\""))),
    }
}

/// The address field, and the netmask field after it when there is no CIDR suffix.
fn parse_address(fields: &mut Fields) -> Result<AddrMatch, LineError> {
    let token = single(
        fields.next_or("IP address specification")?,
        "multiple values specified for host address",
        Some("Specify one address range per line."),
    )?;
    if token.is_keyword("all") {
        return Ok(AddrMatch::All);
    }
    if token.is_keyword("samehost") {
        return Ok(AddrMatch::SameHost);
    }
    if token.is_keyword("samenet") {
        return Ok(AddrMatch::SameNet);
    }
    let (addr_text, cidr) = match token.text.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (token.text.as_str(), None),
    };
    let Ok(addr) = addr_text.parse::<IpAddr>() else {
        if cidr.is_some() {
            return Err(LineError::new(format!(
                "specifying both host name and CIDR mask is invalid: \"{}\"",
                token.text
            )));
        }
        return Err(LineError::new(format!(
            "invalid IP address \"{addr_text}\": host names are not supported"
        )));
    };
    let mask = match cidr {
        Some(bits) => cidr_mask(addr, bits).ok_or_else(|| {
            LineError::new(format!("invalid CIDR mask in address \"{}\"", token.text))
        })?,
        None => parse_mask_field(fields, addr)?,
    };
    Ok(AddrMatch::Net { addr, mask })
}

/// The mask of `bits` leading ones in `addr`'s family (`ifaddr.c: pg_sockaddr_cidr_mask`).
fn cidr_mask(addr: IpAddr, bits: &str) -> Option<IpAddr> {
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u32 = bits.parse().ok()?;
    match addr {
        IpAddr::V4(_) if bits <= 32 => {
            Some(IpAddr::V4(Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0))))
        }
        IpAddr::V6(_) if bits <= 128 => {
            Some(IpAddr::V6(Ipv6Addr::from(u128::MAX.checked_shl(128 - bits).unwrap_or(0))))
        }
        _ => None,
    }
}

/// A netmask in its own field (`255.255.255.0`).
fn parse_mask_field(fields: &mut Fields, addr: IpAddr) -> Result<IpAddr, LineError> {
    let tokens = fields.fields.next().ok_or_else(|| {
        LineError::with_hint(
            "end-of-line before netmask specification",
            "Specify an address range in CIDR notation, or provide a separate netmask.",
        )
    })?;
    let token = single(tokens, "multiple values specified for netmask", None)?;
    let mask: IpAddr = token.text.parse().map_err(|_| {
        LineError::new(format!("invalid IP mask \"{}\": Name or service not known", token.text))
    })?;
    if mask.is_ipv4() != addr.is_ipv4() {
        return Err(LineError::new("IP address and mask do not match"));
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_masks() {
        let v4: IpAddr = "10.0.0.0".parse().unwrap();
        let v6: IpAddr = "::".parse().unwrap();
        assert_eq!(cidr_mask(v4, "0"), Some("0.0.0.0".parse().unwrap()));
        assert_eq!(cidr_mask(v4, "8"), Some("255.0.0.0".parse().unwrap()));
        assert_eq!(cidr_mask(v4, "32"), Some("255.255.255.255".parse().unwrap()));
        assert_eq!(cidr_mask(v4, "33"), None);
        assert_eq!(cidr_mask(v4, ""), None);
        assert_eq!(cidr_mask(v4, "+8"), None);
        assert_eq!(cidr_mask(v4, "99999999999999999999"), None);
        assert_eq!(
            cidr_mask(v6, "128"),
            Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap())
        );
        assert_eq!(cidr_mask(v6, "16"), Some("ffff::".parse().unwrap()));
        assert_eq!(cidr_mask(v6, "129"), None);
    }
}
