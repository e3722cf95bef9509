use super::*;
use flate2::{Compress, Compression, FlushCompress};
use fleetgate_pb::fleetspeak::ContactData;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_uvarint(v, &mut out);
    out
}

#[test]
fn uvarint_known_values() {
    assert_eq!(varint(0), [0]);
    assert_eq!(varint(54), [0x36]);
    assert_eq!(varint(300), [0xac, 0x02]);
    assert_eq!(varint(u64::MAX).len(), 10);
    assert_eq!(decode_uvarint(&[0xac, 0x02, 9]), Ok(Some((300, 2))));
    assert_eq!(decode_uvarint(&[0xac]), Ok(None));
    assert_eq!(decode_uvarint(&[]), Ok(None));
    assert_eq!(decode_uvarint(&[0xff; 10]), Err(WireError::BadVarint));
    assert_eq!(
        decode_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
        Err(WireError::BadVarint)
    );
    assert_eq!(decode_uvarint(&varint(u64::MAX)), Ok(Some((u64::MAX, 10))));
}

#[test]
fn uvarint_round_trips_random_values() {
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..10_000 {
        let v: u64 = rng.random::<u64>() >> rng.random_range(0..64);
        let enc = varint(v);
        assert_eq!(decode_uvarint(&enc), Ok(Some((v, enc.len()))));
        assert_eq!(decode_uvarint(&enc[..enc.len() - 1]), Ok(None));
    }
}

fn stream_of(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for f in frames {
        encode_uvarint(f.len() as u64, &mut out);
        out.extend_from_slice(f);
    }
    out
}

fn decode_in_chunks(
    bytes: &[u8],
    cuts: &mut impl FnMut() -> usize,
) -> Result<Vec<Bytes>, WireError> {
    let mut dec = FrameDecoder::with_magic(1024);
    let mut got = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = cuts().clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        dec.push(chunk);
        while let Some(f) = dec.next_frame()? {
            got.push(f);
        }
    }
    Ok(got)
}

#[test]
fn frames_ignore_chunk_boundaries() {
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..500 {
        let frames: Vec<Vec<u8>> = (0..rng.random_range(0..6))
            .map(|_| {
                (0..rng.random_range(0..300))
                    .map(|_| rng.random())
                    .collect()
            })
            .collect();
        let bytes = stream_of(&frames);
        let got = decode_in_chunks(&bytes, &mut || rng.random_range(1..40)).expect("valid stream");
        assert_eq!(got.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), frames);
    }
}

#[test]
fn zero_length_frame_is_an_empty_wcd() {
    let bytes = stream_of(&[vec![], vec![]]);
    let got = decode_in_chunks(&bytes, &mut || 100).expect("valid");
    assert_eq!(got.len(), 2);
    assert_eq!(decode_wcd(&got[0]), Ok(WrappedContactData::default()));
}

#[test]
fn bad_magic_is_rejected_at_the_first_wrong_byte() {
    let mut dec = FrameDecoder::with_magic(10);
    dec.push(&[0x01, 0x10]);
    assert_eq!(dec.next_frame(), Ok(None));
    dec.push(&[0x16]);
    assert!(matches!(dec.next_frame(), Err(WireError::BadMagic(_))));
    let mut dec = FrameDecoder::with_magic(10);
    dec.push(b"POST");
    assert!(matches!(dec.next_frame(), Err(WireError::BadMagic(_))));
}

#[test]
fn oversized_frame_is_rejected_before_buffering_it() {
    let mut dec = FrameDecoder::with_magic(100);
    let mut bytes = MAGIC.to_vec();
    encode_uvarint(101, &mut bytes);
    dec.push(&bytes);
    assert_eq!(
        dec.next_frame(),
        Err(WireError::FrameTooLarge { len: 101, max: 100 })
    );
    let mut dec = FrameDecoder::without_magic(100);
    dec.push(&[0xff; 11]);
    assert_eq!(dec.next_frame(), Err(WireError::BadVarint));
}

#[test]
fn encode_frame_round_trips() {
    let cd = ContactData {
        ack_index: 7,
        ..Default::default()
    };
    let bytes = encode_frame(&cd);
    let mut dec = FrameDecoder::without_magic(1024);
    dec.push(&bytes);
    let f = dec.next_frame().expect("ok").expect("frame");
    assert_eq!(<ContactData as prost::Message>::decode(f).expect("pb"), cd);
    assert_eq!(dec.buffered(), 0);
}

/// Compresses `parts` as the Go client does: one zlib stream, sync flush after each part.
fn zlib_sync_flushed(parts: &[&[u8]], finish: bool) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), true);
    let mut out = Vec::with_capacity(1 << 16);
    for p in parts {
        c.compress_vec(p, &mut out, FlushCompress::Sync)
            .expect("compress");
    }
    if finish {
        c.compress_vec(&[], &mut out, FlushCompress::Finish)
            .expect("finish");
    }
    out
}

fn inflate_all(z: &mut ZlibStream, mut input: Bytes) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    loop {
        let before = input.len();
        let chunk = z.decode(&mut input, 7)?;
        out.extend_from_slice(&chunk);
        if chunk.is_empty() && input.len() == before {
            return Ok(out);
        }
    }
}

#[test]
fn zlib_decodes_each_sync_flushed_part_without_an_end() {
    let z_bytes = zlib_sync_flushed(&[b"first part", b"second part"], false);
    let mut z = ZlibStream::new(None);
    let cut = z_bytes.len() / 2;
    let mut out = inflate_all(&mut z, Bytes::copy_from_slice(&z_bytes[..cut])).expect("ok");
    out.extend(inflate_all(&mut z, Bytes::copy_from_slice(&z_bytes[cut..])).expect("ok"));
    assert_eq!(out, b"first partsecond part");
    assert!(!z.ended());
}

#[test]
fn zlib_finished_stream_and_trailing_garbage() {
    let mut z_bytes = zlib_sync_flushed(&[b"hello"], true);
    z_bytes.extend_from_slice(b"junk");
    let mut z = ZlibStream::new(Some(100));
    assert_eq!(
        inflate_all(&mut z, Bytes::from(z_bytes)).expect("ok"),
        b"hello"
    );
    assert!(z.ended());
}

#[test]
fn zlib_cap_and_bad_header() {
    let big = vec![0u8; 10_000];
    let mut z = ZlibStream::new(Some(5_000));
    let err = inflate_all(&mut z, Bytes::from(zlib_sync_flushed(&[&big], true)));
    assert_eq!(err, Err(WireError::BodyTooLarge(5_000)));
    let mut z = ZlibStream::new(None);
    assert!(matches!(
        inflate_all(&mut z, Bytes::from_static(b"not zlib at all")),
        Err(WireError::Zlib(_))
    ));
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..2_000 {
        let data: Vec<u8> = (0..rng.random_range(0..200))
            .map(|_| rng.random())
            .collect();
        crate::fuzzing::frames(&data);
        crate::fuzzing::deflate_body(&data);
        crate::fuzzing::wrapped_contact_data(&data);
    }
}
