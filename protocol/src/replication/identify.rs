//! IDENTIFY_SYSTEM's reply, typed: one row of `systemid`, `timeline`, `xlogpos`, `dbname`
//! (`walsender.c: IdentifySystem`), read as `streamutil.c: RunIdentifySystem` and
//! `libpqwalreceiver.c: libpqrcv_identify_system` read it.

use crate::{Lsn, TimeLineId};

/// What IDENTIFY_SYSTEM says about a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The database system identifier.
    pub systemid: u64,
    /// The server's current timeline.
    pub timeline: TimeLineId,
    /// Its current WAL flush position.
    pub xlogpos: Lsn,
    /// The database of a `replication=database` connection; `None` on a physical one
    /// (NULL) or from a server that sends no fourth column.
    pub dbname: Option<String>,
}

/// An IDENTIFY_SYSTEM reply that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifySystemError {
    /// Not one row of at least three fields (`streamutil.c: RunIdentifySystem`).
    #[error(
        "could not identify system: got {rows} rows and {fields} fields, expected 1 rows and 3 or more fields"
    )]
    Shape {
        /// Rows received.
        rows: usize,
        /// Fields in the row description (or the first row).
        fields: usize,
    },
    /// `systemid` is not an unsigned decimal.
    #[error("invalid system identifier \"{0}\"")]
    SystemId(String),
    /// `timeline` is not an integer (`pg_strtoint32`).
    #[error("invalid input syntax for type integer: \"{0}\"")]
    Timeline(String),
    /// `xlogpos` is not `%X/%X` (`streamutil.c: RunIdentifySystem`).
    #[error("could not parse write-ahead log location \"{0}\"")]
    XLogPos(String),
}

fn text(field: Option<&[u8]>) -> String {
    String::from_utf8_lossy(field.unwrap_or_default()).into_owned()
}

impl IdentifySystem {
    /// Reads the reply from its row count and the text-format fields of its first row
    /// (`None` is SQL NULL).
    ///
    /// # Errors
    /// [`IdentifySystemError`] with pg_receivewal's text for a wrong shape or a field that
    /// does not parse.
    pub fn parse(rows: usize, fields: &[Option<&[u8]>]) -> Result<Self, IdentifySystemError> {
        if rows != 1 || fields.len() < 3 {
            return Err(IdentifySystemError::Shape { rows, fields: fields.len() });
        }
        let sysid = text(fields[0]);
        let systemid = sysid
            .parse::<u64>()
            .ok()
            .filter(|_| sysid.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(IdentifySystemError::SystemId(sysid))?;
        let tli = text(fields[1]);
        let timeline = tli.parse::<u32>().map_err(|_| IdentifySystemError::Timeline(tli))?;
        let pos = text(fields[2]);
        let xlogpos = pos.parse::<Lsn>().map_err(|_| IdentifySystemError::XLogPos(pos))?;
        let dbname = fields.get(3).copied().flatten().map(|d| text(Some(d)));
        Ok(IdentifySystem { systemid, timeline: TimeLineId(timeline), xlogpos, dbname })
    }

    /// The row's fields as a walsender sends them (text format).
    pub fn fields(&self) -> [Option<String>; 4] {
        [
            Some(self.systemid.to_string()),
            Some(self.timeline.0.to_string()),
            Some(self.xlogpos.to_string()),
            self.dbname.clone(),
        ]
    }
}

/// Fuzz entry point: [`IdentifySystem::parse`] on one row whose fields are separated by
/// `0xff` (a field of the single byte `0x00` is NULL); what parses prints back to itself.
pub fn fuzz_identify_system(data: &[u8]) {
    let fields: Vec<Option<&[u8]>> =
        data.split(|b| *b == 0xff).map(|f| (f != [0]).then_some(f)).collect();
    let rows = usize::from(data.first().is_some_and(|b| *b != b'!'));
    if let Ok(ident) = IdentifySystem::parse(rows, &fields) {
        let printed = ident.fields();
        let again: Vec<Option<&[u8]>> =
            printed.iter().map(|f| f.as_deref().map(str::as_bytes)).collect();
        let reparsed = IdentifySystem::parse(1, &again);
        // A lossy dbname prints as its replacement characters, which read back the same.
        assert_eq!(reparsed.as_ref(), Ok(&ident), "round trip of {data:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(fields: &[Option<&str>]) -> Result<IdentifySystem, IdentifySystemError> {
        let f: Vec<Option<&[u8]>> = fields.iter().map(|f| f.map(str::as_bytes)).collect();
        IdentifySystem::parse(1, &f)
    }

    #[test]
    fn a_physical_reply_from_postgresql_15() {
        let got = parse(&[Some("7443385357207893530"), Some("1"), Some("0/3000148"), None]);
        assert_eq!(
            got,
            Ok(IdentifySystem {
                systemid: 7443385357207893530,
                timeline: TimeLineId(1),
                xlogpos: Lsn(0x300_0148),
                dbname: None,
            })
        );
        let got = parse(&[Some("1"), Some("2"), Some("0/0"), Some("postgres")]).unwrap();
        assert_eq!(got.dbname.as_deref(), Some("postgres"));
        // A pre-9.4 server sends three fields.
        assert!(parse(&[Some("1"), Some("2"), Some("0/0")]).is_ok());
    }

    #[test]
    fn bad_replies_read_as_pg_receivewal_reports_them() {
        assert_eq!(
            IdentifySystem::parse(0, &[]).unwrap_err().to_string(),
            "could not identify system: got 0 rows and 0 fields, expected 1 rows and 3 or more fields"
        );
        assert_eq!(
            parse(&[Some("x"), Some("1"), Some("0/0")]).unwrap_err().to_string(),
            "invalid system identifier \"x\""
        );
        assert_eq!(
            parse(&[Some("+1"), Some("1"), Some("0/0")]),
            Err(IdentifySystemError::SystemId("+1".into()))
        );
        assert_eq!(
            parse(&[Some("1"), None, Some("0/0")]).unwrap_err().to_string(),
            "invalid input syntax for type integer: \"\""
        );
        assert_eq!(
            parse(&[Some("1"), Some("1"), Some("0/G")]).unwrap_err().to_string(),
            "could not parse write-ahead log location \"0/G\""
        );
    }

    proptest! {
        #[test]
        fn fields_parse_back(
            systemid in any::<u64>(),
            tli in any::<u32>(),
            pos in any::<u64>(),
            dbname in proptest::option::of("[a-z_]{1,20}"),
        ) {
            let ident = IdentifySystem { systemid, timeline: TimeLineId(tli), xlogpos: Lsn(pos), dbname };
            let fields = ident.fields();
            let f: Vec<Option<&[u8]>> = fields.iter().map(|f| f.as_deref().map(str::as_bytes)).collect();
            prop_assert_eq!(IdentifySystem::parse(1, &f), Ok(ident));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            fuzz_identify_system(&data);
        }
    }
}
