//! [`Image`]: the committed state at a checkpoint, versioned and checksummed.
//!
//! Limitation: [`Engine::image`] copies every committed row while it holds the engine's
//! locks, and [`Image::encode`] builds one buffer; [`TableImage::encode`] lets a writer put
//! each table in its own file, but a 1 GB table is still held in memory twice meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};

use super::catalog::{Oid, Row, TableDef};
use super::change::Change;
use super::codec::{DecodeError, PutExt, Reader};
use super::key::RowKey;
use super::state::{Slot, State, Table, TableState};
use super::{Engine, TxnLog, Xid};

const MAGIC: &[u8; 8] = b"WSNODEI\0";
const VERSION: u32 = 1;

/// One table's committed rows.
#[derive(Debug, Clone, PartialEq)]
pub struct TableImage {
    /// Its definition.
    pub def: TableDef,
    /// Its committed rows in key order.
    pub rows: Vec<Row>,
}

/// The engine's committed state at one WAL position.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Image {
    /// The xid the next transaction gets.
    pub next_xid: Xid,
    /// The oid the next table gets.
    pub next_oid: Oid,
    /// Transactions in progress that had logged changes, with the WAL insert position
    /// before their first change: redo must start at or before the least of them.
    pub in_progress: Vec<(Xid, u64)>,
    /// Changes replayed (redo) for transactions whose end has not been replayed yet.
    pub redo_pending: Vec<(Xid, Vec<Change>)>,
    /// Every committed table.
    pub tables: Vec<TableImage>,
}

impl TableImage {
    /// Appends this table's bytes to `b`.
    pub fn encode(&self, b: &mut BytesMut) {
        b.put_table_def(&self.def);
        b.put_u64_le(self.rows.len() as u64);
        self.rows.iter().for_each(|r| b.put_row(r));
    }

    fn decode(r: &mut Reader<'_>) -> Result<TableImage, DecodeError> {
        let def = r.table_def()?;
        let n = r.u64()?;
        let mut rows = Vec::new();
        for _ in 0..n {
            rows.push(r.row()?);
        }
        Ok(TableImage { def, rows })
    }
}

impl Image {
    /// The image's bytes: magic, version, body, CRC-32C of everything before it.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_slice(MAGIC);
        b.put_u32_le(VERSION);
        b.put_u32_le(self.next_xid);
        b.put_u32_le(self.next_oid);
        b.put_u32_le(self.in_progress.len() as u32);
        for (x, l) in &self.in_progress {
            b.put_u32_le(*x);
            b.put_u64_le(*l);
        }
        b.put_u32_le(self.redo_pending.len() as u32);
        for (x, changes) in &self.redo_pending {
            b.put_u32_le(*x);
            b.put_u32_le(changes.len() as u32);
            for c in changes {
                let (info, payload) = c.encode();
                b.put_u8(info);
                b.put_u32_le(payload.len() as u32);
                b.put_slice(&payload);
            }
        }
        b.put_u32_le(self.tables.len() as u32);
        self.tables.iter().for_each(|t| t.encode(&mut b));
        let crc = crc32c::crc32c(&b);
        b.put_u32_le(crc);
        b.freeze()
    }

    /// Reads what [`Image::encode`] wrote.
    ///
    /// # Errors
    /// Wrong magic or version, a checksum mismatch, short or malformed bytes.
    pub fn decode(bytes: &[u8]) -> Result<Image, DecodeError> {
        let body_len = bytes.len().checked_sub(4).ok_or(DecodeError::Truncated(bytes.len()))?;
        let (body, crc) = bytes.split_at(body_len);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != want {
            return Err(DecodeError::Header("image checksum mismatch".into()));
        }
        let mut r = Reader::new(body);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(DecodeError::Header("not a walstream node image".into()));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(DecodeError::Header(format!(
                "image version {version}, expected {VERSION}"
            )));
        }
        let mut img = Image { next_xid: r.u32()?, next_oid: r.u32()?, ..Image::default() };
        for _ in 0..r.u32()? {
            img.in_progress.push((r.u32()?, r.u64()?));
        }
        for _ in 0..r.u32()? {
            let xid = r.u32()?;
            let mut changes = Vec::new();
            for _ in 0..r.u32()? {
                let info = r.u8()?;
                let n = r.u32()? as usize;
                changes.push(Change::decode(info, r.take(n)?)?);
            }
            img.redo_pending.push((xid, changes));
        }
        for _ in 0..r.u32()? {
            img.tables.push(TableImage::decode(&mut r)?);
        }
        r.finish()?;
        Ok(img)
    }
}

impl Engine {
    /// The committed state: takes the commit lock, calls `f` (the WAL insert position) and
    /// returns what `f` returned with the image at that point.
    pub fn image(&self, f: impl FnOnce() -> u64) -> (u64, Image) {
        let _commit = self.commit_lock.lock();
        let st = self.state.read();
        let lsn = f();
        let tables = st
            .tables
            .values()
            .filter(|t| !matches!(t.state, TableState::CreatedBy(_)))
            .map(|t| TableImage {
                def: (*t.def).clone(),
                rows: t.rows.values().filter_map(|s| s.committed.clone()).collect(),
            })
            .collect();
        let mut in_progress: Vec<(Xid, u64)> =
            st.running.iter().filter_map(|(x, r)| r.first_lsn.map(|l| (*x, l))).collect();
        in_progress.sort_unstable();
        let redo_pending = st.redo.iter().map(|(x, c)| (*x, c.clone())).collect();
        (
            lsn,
            Image {
                next_xid: st.next_xid,
                next_oid: st.next_oid,
                in_progress,
                redo_pending,
                tables,
            },
        )
    }

    /// An engine holding `image`'s committed state.
    pub fn from_image(image: Image, log: Arc<dyn TxnLog>) -> Arc<Engine> {
        let mut st = State::new(image.next_xid);
        st.next_oid = image.next_oid.max(st.next_oid);
        for t in image.tables {
            let def = Arc::new(t.def);
            let rows: BTreeMap<_, _> = t
                .rows
                .into_iter()
                .map(|r| (RowKey::of_row(&def, &r), Slot { committed: Some(r), pending: None }))
                .collect();
            st.tables.insert(def.oid, Table { def, state: TableState::Committed, rows });
        }
        st.redo = image.redo_pending.into_iter().collect();
        super::state::catalog_changed();
        Arc::new(Engine {
            state: RwLock::new(st),
            commit_lock: Mutex::new(()),
            log,
            relation_locks: super::conflict::RelationLocks::default(),
            standby_delay: Mutex::new(super::StandbyDelay::After(std::time::Duration::from_secs(
                30,
            ))),
            open: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::engine::change::strategies::{change, row, table_def};

    fn image() -> impl Strategy<Value = Image> {
        let table = (table_def(), proptest::collection::vec(row(), 0..4))
            .prop_map(|(def, rows)| TableImage { def, rows });
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec((any::<u32>(), any::<u64>()), 0..3),
            proptest::collection::vec(
                (any::<u32>(), proptest::collection::vec(change(), 0..3)),
                0..3,
            ),
            proptest::collection::vec(table, 0..3),
        )
            .prop_map(|(next_xid, next_oid, in_progress, redo_pending, tables)| Image {
                next_xid,
                next_oid,
                in_progress,
                redo_pending,
                tables,
            })
    }

    proptest! {
        #[test]
        fn image_round_trips(img in image()) {
            prop_assert_eq!(Image::decode(&img.encode()).unwrap(), img);
        }

        #[test]
        fn flipped_byte_is_caught(img in image(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut b = img.encode().to_vec();
            let i = at.index(b.len());
            b[i] ^= 1 << bit;
            prop_assert!(Image::decode(&b).is_err());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Image::decode(&bytes);
        }
    }
}
