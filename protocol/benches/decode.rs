//! Decode + CRC throughput, owned (`poll`) and borrowed (`poll_ref`), over 8 MB of
//! encoder-made WAL of two shapes: `oltp`, records of 50-300 bytes with a block reference
//! each and an 8 kB full-page image every 50th; `bulk`, what loads write — records of
//! 3-24 kB that cross one to three page boundaries (multi-insert-like block data), each
//! second one also carrying an 8 kB full-page image.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walstream_protocol::wal::{
    BlockImage, BlockRef, EncoderConfig, RecordSpec, RelFileNode, WalDecoder, WalEncoder,
};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

#[derive(Clone, Copy)]
enum Shape {
    Oltp,
    Bulk,
}

fn wal(shape: Shape) -> (Lsn, Bytes) {
    let seg_size = WalSegSize::new(1 << 20).unwrap();
    let cfg = EncoderConfig { system_id: 1, timeline: TimeLineId(1), seg_size };
    let start = Lsn(0x0100_0000);
    let mut enc = WalEncoder::new(cfg, start, Lsn(0x00FF_FF00)).unwrap();
    let rnode = RelFileNode { spc_node: 1663, db_node: 5, rel_node: 16384 };
    let mut i = 0u32;
    while enc.position() - start < 8 << 20 {
        i += 1;
        let with_image = match shape {
            Shape::Oltp => i % 50 == 0,
            Shape::Bulk => i % 2 == 0,
        };
        let image = with_image.then(|| BlockImage {
            bimg_info: 0x02,
            hole_offset: 0,
            hole_length: 0,
            data: Bytes::from(vec![(i % 251) as u8; 8192]),
        });
        let len = match shape {
            Shape::Oltp => 20 + (i as usize * 37) % 250,
            // Block data is at most 65535 bytes; half goes to the main data.
            Shape::Bulk => 3000 + (i as usize * 7919) % 21000,
        };
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
    for (name, shape) in [("oltp", Shape::Oltp), ("bulk", Shape::Bulk)] {
        let (start, bytes) = wal(shape);
        let seg_size = WalSegSize::new(1 << 20).unwrap();
        let mut g = c.benchmark_group(format!("wal_{name}"));
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
}

criterion_group!(benches, decode);
criterion_main!(benches);
