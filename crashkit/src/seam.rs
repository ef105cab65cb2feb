//! Where a writer stopped writing in a WAL image. (The fault layers that used to live here
//! are hooks of the one fault storage now: [`crate::faults`].)

/// Where a writer stopped writing in a WAL image: past every whole record (frames whose
/// checksum holds, walked from the header) and past the last non-zero byte. The engine
/// preallocates its WAL, so zeros it never wrote follow the log and the file length no
/// longer says where writing stopped. (A record whose last bytes are zeros, cut inside
/// them, reads as whole: the image cannot tell, and recovery reads it the same way.)
pub fn written_end_bytes(image: &[u8]) -> u64 {
    use engine::wal::FrameCodec;
    let header = engine::wal::HEADER_LEN;
    if image.len() <= header {
        return image.len() as u64;
    }
    let codec = FrameCodec::for_image(image).unwrap_or(FrameCodec::V1);
    let mut whole_end = header;
    while let Some(len) = codec
        .inspect(whole_end as u64, &image[whole_end..])
        .record_len()
    {
        whole_end += len;
    }
    let nonzero_end = image.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    whole_end.max(nonzero_end) as u64
}
