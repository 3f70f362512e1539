//! The connection options of PostgreSQL's client programs (`-d`, `-h`, `-p`, `-U`, `-w`,
//! `-W`), turned into a [`ConnInfo`] as libpq does: the connection string first, then
//! the options over it.

use anyhow::{Context, Result};
use clap::Args;
use walstream_receiver::conninfo::ConnInfo;

/// `-d`, `-h`, `-p`, `-U`, `-w`, `-W`.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Connection string.
    #[arg(short = 'd', long = "dbname", value_name = "CONNSTR")]
    pub dbname: Option<String>,
    /// Database server host.
    #[arg(short = 'h', long = "host")]
    pub host: Option<String>,
    /// Database server port number.
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
    /// Connect as specified database user.
    #[arg(short = 'U', long = "username")]
    pub username: Option<String>,
    /// Never prompt for password.
    #[arg(short = 'w', long = "no-password")]
    pub no_password: bool,
    /// Force password prompt (should happen automatically).
    #[arg(short = 'W', long = "password")]
    pub password: bool,
}

impl ConnArgs {
    /// The connection, with `application_name` defaulting to `program`.
    ///
    /// # Errors
    /// A connection string that does not parse; a password prompt that failed.
    pub fn conninfo(&self, program: &str) -> Result<ConnInfo> {
        let mut info = ConnInfo::parse(self.dbname.as_deref().unwrap_or(""))?;
        if let Some(h) = &self.host {
            info.host.clone_from(h);
        }
        if let Some(p) = self.port {
            info.port = p;
        }
        if let Some(u) = &self.username {
            info.user.clone_from(u);
        }
        if info.application_name.is_none() {
            info.application_name = Some(program.to_string());
        }
        if self.password && !self.no_password {
            let pw = rpassword::prompt_password("Password: ").context("reading the password")?;
            info.password = Some(pw);
        }
        Ok(info)
    }
}
