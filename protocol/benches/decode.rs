//! Decode + CRC throughput, owned (`poll`) and borrowed (`poll_ref`), over a few MB of
//! encoder-made WAL: records of 50-300 bytes with block references, and some 8 kB
//! full-page images.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walstream_protocol::wal::{
    BlockImage, BlockRef, EncoderConfig, RecordSpec, RelFileNode, WalDecoder, WalEncoder,
};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

fn wal() -> (Lsn, Bytes) {
    let seg_size = WalSegSize::new(1 << 20).unwrap();
    let cfg = EncoderConfig { system_id: 1, timeline: TimeLineId(1), seg_size };
    let start = Lsn(0x0100_0000);
    let mut enc = WalEncoder::new(cfg, start, Lsn(0x00FF_FF00)).unwrap();
    let rnode = RelFileNode { spc_node: 1663, db_node: 5, rel_node: 16384 };
    let mut i = 0u32;
    while enc.position() - start < 8 << 20 {
        i += 1;
        let image = (i % 50 == 0).then(|| BlockImage {
            bimg_info: 0x02,
            hole_offset: 0,
            hole_length: 0,
            data: Bytes::from(vec![(i % 251) as u8; 8192]),
        });
        let len = 20 + (i as usize * 37) % 250;
        let block = BlockRef {
            id: 0,
            fork_flags: 0,
            rnode,
            blkno: i,
            image,
            data: Bytes::from(vec![1u8; len / 2]),
        };
        let spec = RecordSpec {
            rmid: 10,
            info: 0,
            xid: walstream_protocol::lsn::Xid(i),
            blocks: vec![block],
            main_data: Bytes::from(vec![2u8; len / 2]),
            ..Default::default()
        };
        enc.append(&spec).unwrap();
    }
    let (from, bytes) = enc.take();
    (from, bytes)
}

fn decode(c: &mut Criterion) {
    let (start, bytes) = wal();
    let seg_size = WalSegSize::new(1 << 20).unwrap();
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("owned_poll_8MB_in_128kB_chunks", |b| {
        b.iter(|| {
            let mut d = WalDecoder::new(start, seg_size);
            let mut n = 0usize;
            for off in (0..bytes.len()).step_by(128 * 1024) {
                d.feed(bytes.slice(off..(off + 128 * 1024).min(bytes.len())));
                while let Ok(Some(r)) = d.poll() {
                    n += r.blocks.len();
                }
            }
            n
        })
    });
    g.bench_function("borrowed_poll_ref_8MB_in_128kB_chunks", |b| {
        b.iter(|| {
            let mut d = WalDecoder::new(start, seg_size);
            let mut n = 0usize;
            for off in (0..bytes.len()).step_by(128 * 1024) {
                d.feed(bytes.slice(off..(off + 128 * 1024).min(bytes.len())));
                while let Ok(Some(r)) = d.poll_ref() {
                    n += r.block_count() + r.main_data().len();
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
