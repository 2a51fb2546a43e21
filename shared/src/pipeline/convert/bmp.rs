//! BMP, streamed: uncompressed 24- and 32-bit and 8-bit palette files (what
//! cameras, editors and screenshots write) are read one row at a time, in
//! file order, which is usually bottom up, and shrunk as they arrive;
//! reading stops after the last row of the centred square. Other encodings
//! (RLE, bit fields, 1/4/16-bit, OS/2 headers) take the whole-image path.

use std::io::{BufRead, Read};

use image::metadata::Orientation;

use super::rows::Shrinker;
use super::{Limits, Rejection, Staged, check_size, corrupt, fallback, skip};
use crate::domain::MAX_IMAGE_BYTES;

const FILE_HEADER: usize = 14;

pub(super) fn stage<R: BufRead>(mut input: R, limits: &Limits) -> Result<Staged, Rejection> {
    let truncated = |e: std::io::Error| corrupt("BMP", e);
    let mut head = vec![0u8; FILE_HEADER + 4];
    input.read_exact(&mut head).map_err(truncated)?;
    let dib_size = u32_at(&head, FILE_HEADER) as usize;
    if !(12..=1024).contains(&dib_size) {
        return Err(corrupt("BMP", format!("header size {dib_size}")));
    }
    head.resize(FILE_HEADER + dib_size, 0);
    input
        .read_exact(&mut head[FILE_HEADER + 4..])
        .map_err(truncated)?;

    let Some(plain) = Plain::parse(&head) else {
        // Not one of the streamed encodings: the rest of the file, then the
        // `image` crate, behind the same limits.
        input
            .take(MAX_IMAGE_BYTES + 1)
            .read_to_end(&mut head)
            .map_err(truncated)?;
        return fallback::stage_bmp(&head, limits);
    };
    let (w, h) = (plain.width, plain.height);
    check_size("BMP", w.into(), h.into(), 4, limits)?;

    let mut palette = Vec::new();
    if plain.bits == 8 {
        let mut raw = vec![0u8; plain.colours as usize * 4];
        input.read_exact(&mut raw).map_err(truncated)?;
        palette = raw.chunks_exact(4).map(|p| [p[2], p[1], p[0]]).collect();
        palette.resize(256, [0, 0, 0]);
    }
    let consumed = head.len() + plain.colours as usize * 4;
    let offset = u32_at(&head, 10) as usize;
    if offset < consumed {
        return Err(corrupt("BMP", "pixel data overlaps the header"));
    }
    skip(&mut input, (offset - consumed) as u64).map_err(truncated)?;

    let bytes_pp = plain.bits as usize / 8;
    let stride = (w as usize * plain.bits as usize).div_ceil(32) * 4;
    let mut shrinker = Shrinker::new(w, h, Orientation::NoTransforms);
    let mut raw = vec![0u8; stride];
    let mut rgb = Vec::with_capacity(w as usize * 3);
    // The square's last row in file order: nothing after it is read.
    let square = shrinker.rows();
    let last = if plain.bottom_up {
        square.start
    } else {
        square.end - 1
    };
    for i in 0..h {
        let y = if plain.bottom_up { h - 1 - i } else { i };
        input.read_exact(&mut raw).map_err(truncated)?;
        if !shrinker.wants(y) {
            continue;
        }
        rgb.clear();
        let pixels = &raw[..w as usize * bytes_pp];
        match plain.bits {
            8 => rgb.extend(pixels.iter().flat_map(|&i| palette[i as usize])),
            _ => rgb.extend(
                pixels
                    .chunks_exact(bytes_pp)
                    .flat_map(|p| [p[2], p[1], p[0]]),
            ),
        }
        shrinker.push(y, &rgb);
        if y == last {
            break;
        }
    }
    Ok(shrinker.finish())
}

/// An uncompressed BMP this module streams.
struct Plain {
    width: u32,
    height: u32,
    bottom_up: bool,
    bits: u16,
    /// Palette entries in the file (8-bit only).
    colours: u32,
}

impl Plain {
    fn parse(head: &[u8]) -> Option<Plain> {
        let dib = &head[FILE_HEADER..];
        if dib.len() < 40 {
            return None; // OS/2 BITMAPCOREHEADER
        }
        let width = i32::from_le_bytes(dib[4..8].try_into().ok()?);
        let height = i32::from_le_bytes(dib[8..12].try_into().ok()?);
        let bits = u16::from_le_bytes(dib[14..16].try_into().ok()?);
        let compression = u32_at(dib, 16);
        let used = u32_at(dib, 32);
        // BI_RGB only; 32-bit BI_RGB's fourth byte is unused by definition.
        if compression != 0 || !matches!(bits, 8 | 24 | 32) || width <= 0 || height == 0 {
            return None;
        }
        let colours = match (bits, used) {
            (8, 0) => 256,
            (8, n) if n <= 256 => n,
            (8, _) => return None,
            _ => 0,
        };
        Some(Plain {
            width: width as u32,
            height: height.unsigned_abs(),
            bottom_up: height > 0,
            bits,
            colours,
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
