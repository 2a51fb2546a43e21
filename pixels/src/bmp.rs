//! BMP, streamed: every encoding the converter accepts is read one row at a
//! time, in file order (usually bottom up), and shrunk as rows arrive;
//! reading stops after the last row of the centred square. Memory is a row
//! and the staged image, whatever the picture's size.
//!
//! Accepted, as the `image` crate reads them (pixel for pixel: the tests
//! hold every layout to its decoder): the OS/2 core header and
//! `BITMAPINFOHEADER` through V5; 1-, 2-, 4- and 8-bit palettes; 16-bit
//! 5-5-5, 24- and 32-bit `BI_RGB` (the fourth byte unused); 16- and 32-bit
//! `BI_BITFIELDS`, with alpha (V3 headers and later) flattened onto white;
//! RLE8 and RLE4, with their deltas (skipped pixels are black). Refused with
//! a reason: JPEG-, PNG- and CMYK-compressed BMPs, other bit depths and
//! header sizes, compressed top-down files.

use std::io::{BufRead, Read};

use image::metadata::Orientation;

use super::rows::{Layout, Shrinker, to_rgb};
use super::{Limits, Rejection, Staged, check_dimensions, corrupt, reject, skip};

const FILE_HEADER: usize = 14;
/// The DIB header sizes there are: OS/2 core, INFO, V2 to V5.
const HEADER_SIZES: [usize; 6] = [12, 40, 52, 56, 108, 124];

pub(super) fn stage<R: BufRead>(mut input: R, limits: &Limits) -> Result<Staged, Rejection> {
    let truncated = |e: std::io::Error| corrupt("BMP", e);
    let mut head = vec![0u8; FILE_HEADER + 4];
    input.read_exact(&mut head).map_err(truncated)?;
    let dib_size = u32_at(&head, FILE_HEADER) as usize;
    if !HEADER_SIZES.contains(&dib_size) {
        return Err(corrupt("BMP", format!("header size {dib_size}")));
    }
    head.resize(FILE_HEADER + dib_size, 0);
    input
        .read_exact(&mut head[FILE_HEADER + 4..])
        .map_err(truncated)?;
    let header = Header::parse(&head[FILE_HEADER..])?;
    // An INFO header's bit fields follow it (later headers hold them).
    if header.compression == BI_BITFIELDS && dib_size == 40 {
        head.resize(FILE_HEADER + 52, 0);
        input
            .read_exact(&mut head[FILE_HEADER + 40..])
            .map_err(truncated)?;
    }
    let (w, h) = (header.width, header.height);
    check_dimensions("BMP", w.into(), h.into(), limits)?;
    let mut consumed = head.len();
    let pixels = header.pixels(&head[FILE_HEADER..], &mut input, &mut consumed)?;

    let offset = u32_at(&head, 10) as usize;
    if offset < consumed {
        return Err(corrupt("BMP", "pixel data overlaps the header"));
    }
    skip(&mut input, (offset - consumed) as u64).map_err(truncated)?;

    let mut shrinker = Shrinker::new(w, h, Orientation::NoTransforms);
    // The square's last row in file order: nothing after it is read.
    let square = shrinker.rows();
    let last = if header.bottom_up {
        square.start
    } else {
        square.end - 1
    };
    let mut rows = Rows::new(pixels, w as usize, h);
    let mut rgb = Vec::with_capacity(w as usize * 3);
    for i in 0..h {
        let y = if header.bottom_up { h - 1 - i } else { i };
        let wanted = shrinker.wants(y);
        rows.next(&mut input, wanted, &mut rgb)?;
        if wanted {
            shrinker.push(y, &rgb);
        }
        if y == last {
            break;
        }
    }
    Ok(shrinker.finish())
}

const BI_RGB: u32 = 0;
const BI_RLE8: u32 = 1;
const BI_RLE4: u32 = 2;
const BI_BITFIELDS: u32 = 3;

struct Header {
    width: u32,
    height: u32,
    bottom_up: bool,
    bits: u16,
    compression: u32,
    /// Palette entries in the file; 0 for "all the bit depth allows".
    colours: u32,
    /// The OS/2 core header: 3-byte palette entries.
    core: bool,
}

impl Header {
    fn parse(dib: &[u8]) -> Result<Header, Rejection> {
        let bad = |what: String| corrupt("BMP", what);
        let u16_at = |at: usize| u16::from_le_bytes([dib[at], dib[at + 1]]);
        let (width, height, planes, bits, compression, colours, core) = if dib.len() == 12 {
            let (w, h) = (u16_at(4), u16_at(6));
            (
                i32::from(w),
                i32::from(h),
                u16_at(8),
                u16_at(10),
                BI_RGB,
                0,
                true,
            )
        } else {
            let width = u32_at(dib, 4) as i32;
            let height = u32_at(dib, 8) as i32;
            (
                width,
                height,
                u16_at(12),
                u16_at(14),
                u32_at(dib, 16),
                u32_at(dib, 32),
                false,
            )
        };
        if width < 0 {
            return Err(bad(format!("negative width {width}")));
        }
        if height == i32::MIN {
            return Err(bad("height -2^31".into()));
        }
        if planes != 1 {
            return Err(bad(format!("{planes} planes")));
        }
        let top_down = height < 0;
        if top_down && !matches!(compression, BI_RGB | BI_BITFIELDS) {
            return Err(bad("a top-down BMP cannot be compressed".into()));
        }
        let depth_ok = match (core, compression) {
            (true, _) => matches!(bits, 1 | 4 | 8 | 24),
            (false, BI_RGB) => matches!(bits, 1 | 2 | 4 | 8 | 16 | 24 | 32),
            (false, BI_RLE8) => bits == 8,
            (false, BI_RLE4) => bits == 4,
            (false, BI_BITFIELDS) => matches!(bits, 16 | 32),
            (false, 4) => return Err(reject("JPEG-compressed BMPs are not supported")),
            (false, 5) => return Err(reject("PNG-compressed BMPs are not supported")),
            (false, 11..=13) => return Err(reject("CMYK BMPs are not supported")),
            (false, c) => return Err(bad(format!("unknown compression {c}"))),
        };
        if !depth_ok {
            return Err(bad(format!(
                "{bits} bits a pixel with compression {compression}"
            )));
        }
        Ok(Header {
            width: width as u32,
            height: height.unsigned_abs(),
            bottom_up: !top_down,
            bits,
            compression,
            colours,
            core,
        })
    }

    /// How a row's bytes become pixels; reads the palette, if any, from
    /// `input` (it follows the header). `dib` holds the header and, for
    /// bit fields, their masks.
    fn pixels<R: Read>(
        &self,
        dib: &[u8],
        input: &mut R,
        consumed: &mut usize,
    ) -> Result<Pixels, Rejection> {
        let fields = |masks: [u32; 4]| -> Result<Pixels, Rejection> {
            Ok(Pixels::Fields {
                bytes: self.bits as usize / 8,
                r: Field::new(masks[0], self.bits)?,
                g: Field::new(masks[1], self.bits)?,
                b: Field::new(masks[2], self.bits)?,
                a: Field::new(masks[3], self.bits)?,
            })
        };
        Ok(match (self.compression, self.bits) {
            (BI_RGB, 24) => Pixels::Bgr { bytes: 3 },
            (BI_RGB, 32) => Pixels::Bgr { bytes: 4 },
            (BI_RGB, 16) => fields([0x7C00, 0x03E0, 0x001F, 0])?,
            (BI_BITFIELDS, _) => {
                let alpha = if dib.len() >= 56 { u32_at(dib, 52) } else { 0 };
                let masks = [u32_at(dib, 40), u32_at(dib, 44), u32_at(dib, 48), alpha];
                let p = fields(masks)?;
                if let Pixels::Fields { r, g, b, .. } = &p
                    && (r.len == 0 || g.len == 0 || b.len == 0)
                {
                    return Err(corrupt("BMP", "a colour's bit field is empty"));
                }
                p
            }
            _ => {
                let palette = self.palette(input, consumed)?;
                match self.compression {
                    BI_RLE8 => Pixels::Rle(Rle::new(false, palette)),
                    BI_RLE4 => Pixels::Rle(Rle::new(true, palette)),
                    _ => Pixels::Indexed {
                        bits: self.bits as usize,
                        palette,
                    },
                }
            }
        })
    }

    /// 256 entries, whatever the file holds: the ones past its palette are
    /// black (an index there is the file's error, not a reason to refuse).
    fn palette<R: Read>(
        &self,
        input: &mut R,
        consumed: &mut usize,
    ) -> Result<Box<[[u8; 3]; 256]>, Rejection> {
        let most = 1u32 << self.bits;
        let entries = match self.colours {
            0 => most,
            n if n <= most => n,
            n => {
                return Err(corrupt(
                    "BMP",
                    format!("{n} palette entries for {} bits a pixel", self.bits),
                ));
            }
        } as usize;
        let size = if self.core { 3 } else { 4 };
        let mut raw = vec![0u8; entries * size];
        input.read_exact(&mut raw).map_err(|e| corrupt("BMP", e))?;
        *consumed += raw.len();
        let mut palette = Box::new([[0u8; 3]; 256]);
        for (entry, p) in palette.iter_mut().zip(raw.chunks_exact(size)) {
            *entry = [p[2], p[1], p[0]];
        }
        Ok(palette)
    }
}

/// One colour's bits of a 16- or 32-bit pixel, scaled to 8 bits as the
/// `image` crate scales them (its tables are round(v * 255 / max)).
#[derive(Clone, Copy, Debug)]
struct Field {
    shift: u32,
    len: u32,
}

impl Field {
    fn new(mask: u32, bits: u16) -> Result<Field, Rejection> {
        if mask == 0 {
            return Ok(Field { shift: 0, len: 0 });
        }
        let mut shift = mask.trailing_zeros();
        let mut len = (!(mask >> shift)).trailing_zeros();
        if len != mask.count_ones() {
            return Err(corrupt(
                "BMP",
                format!("bit field {mask:#x} is not contiguous"),
            ));
        }
        if len + shift > u32::from(bits) {
            return Err(corrupt(
                "BMP",
                format!("bit field {mask:#x} is wider than a pixel"),
            ));
        }
        // More than 8 bits: the top 8.
        if len > 8 {
            shift += len - 8;
            len = 8;
        }
        Ok(Field { shift, len })
    }

    #[inline]
    fn read(self, v: u32) -> u8 {
        let max = (1u32 << self.len) - 1;
        let x = (v >> self.shift) & max;
        ((x * 255 + max / 2) / max) as u8
    }
}

enum Pixels {
    /// 1, 2, 4 or 8 bits an index, most significant first.
    Indexed {
        bits: usize,
        palette: Box<[[u8; 3]; 256]>,
    },
    /// Blue, green, red, and for 4 bytes one unused.
    Bgr {
        bytes: usize,
    },
    /// 16 or 32 bits a pixel, little-endian, cut by masks.
    Fields {
        bytes: usize,
        r: Field,
        g: Field,
        b: Field,
        a: Field,
    },
    Rle(Rle),
}

/// Rows in file order.
struct Rows {
    pixels: Pixels,
    width: usize,
    raw: Vec<u8>,
    rgba: Vec<u8>,
    /// Rows left, for RLE's deltas.
    left: u32,
}

impl Rows {
    fn new(pixels: Pixels, width: usize, height: u32) -> Self {
        let bits = match &pixels {
            Pixels::Indexed { bits, .. } => *bits,
            Pixels::Bgr { bytes } | Pixels::Fields { bytes, .. } => bytes * 8,
            Pixels::Rle(_) => 0,
        };
        Rows {
            pixels,
            width,
            raw: vec![0; (width * bits).div_ceil(32) * 4],
            rgba: Vec::new(),
            left: height,
        }
    }

    /// The next row as RGB8 in `rgb`; `wanted` false only reads past it.
    fn next<R: BufRead>(
        &mut self,
        input: &mut R,
        wanted: bool,
        rgb: &mut Vec<u8>,
    ) -> Result<(), Rejection> {
        self.left -= 1;
        if let Pixels::Rle(rle) = &mut self.pixels {
            return rle.row(input, self.width, self.left, rgb);
        }
        input
            .read_exact(&mut self.raw)
            .map_err(|e| corrupt("BMP", e))?;
        if !wanted {
            return Ok(());
        }
        // Index loops rather than `flat_map` into arrays: where the
        // optimiser inlines little (the tests' build was opt-level 1) the
        // adaptors took twice as long (perf).
        let w = self.width;
        rgb.clear();
        rgb.resize(w * 3, 0);
        let raw = &self.raw;
        match &self.pixels {
            Pixels::Indexed { bits, palette } => {
                let bits = *bits;
                let per_byte = 8 / bits;
                let mask = ((1u16 << bits) - 1) as u8;
                for x in 0..w {
                    let byte = raw[x / per_byte];
                    let shift = 8 - bits * (x % per_byte + 1);
                    let colour = &palette[usize::from((byte >> shift) & mask)];
                    rgb[x * 3..x * 3 + 3].copy_from_slice(colour);
                }
            }
            Pixels::Bgr { bytes } => {
                let bytes = *bytes;
                for x in 0..w {
                    let p = &raw[x * bytes..x * bytes + 3];
                    rgb[x * 3..x * 3 + 3].copy_from_slice(&[p[2], p[1], p[0]]);
                }
            }
            Pixels::Fields { bytes, r, g, b, a } => {
                let bytes = *bytes;
                let value = |x: usize| {
                    let p = &raw[x * bytes..];
                    if bytes == 2 {
                        u32::from(u16::from_le_bytes([p[0], p[1]]))
                    } else {
                        u32::from_le_bytes([p[0], p[1], p[2], p[3]])
                    }
                };
                if a.len == 0 {
                    for x in 0..w {
                        let v = value(x);
                        rgb[x * 3..x * 3 + 3].copy_from_slice(&[r.read(v), g.read(v), b.read(v)]);
                    }
                } else {
                    self.rgba.clear();
                    self.rgba.resize(w * 4, 0);
                    for x in 0..w {
                        let v = value(x);
                        self.rgba[x * 4..x * 4 + 4].copy_from_slice(&[
                            r.read(v),
                            g.read(v),
                            b.read(v),
                            a.read(v),
                        ]);
                    }
                    to_rgb(Layout::Rgba, &self.rgba, rgb);
                }
            }
            Pixels::Rle(_) => unreachable!("handled above"),
        }
        Ok(())
    }
}

/// RLE8 and RLE4, one row at a time. A delta may move down rows: the rest
/// of the row, the rows it passes and the start of the row it lands in are
/// black, as in the `image` crate (and Windows).
struct Rle {
    four: bool,
    palette: Box<[[u8; 3]; 256]>,
    /// Whole black rows still owed by a delta.
    black_rows: u32,
    /// Where the row after those starts.
    resume_at: usize,
    /// End of bitmap seen: every row after is black.
    ended: bool,
    scratch: Vec<u8>,
}

impl Rle {
    fn new(four: bool, palette: Box<[[u8; 3]; 256]>) -> Self {
        Rle {
            four,
            palette,
            black_rows: 0,
            resume_at: 0,
            ended: false,
            scratch: Vec::new(),
        }
    }

    /// One row of `width` pixels; `below` rows remain after it.
    fn row<R: BufRead>(
        &mut self,
        input: &mut R,
        width: usize,
        below: u32,
        rgb: &mut Vec<u8>,
    ) -> Result<(), Rejection> {
        rgb.clear();
        rgb.resize(width * 3, 0);
        if self.ended {
            return Ok(());
        }
        if self.black_rows > 0 {
            self.black_rows -= 1;
            return Ok(());
        }
        let bad = |what: &str| corrupt("BMP", format!("RLE data {what}"));
        let byte = |input: &mut R| -> Result<u8, Rejection> {
            let mut b = [0u8];
            input.read_exact(&mut b).map_err(|e| corrupt("BMP", e))?;
            Ok(b[0])
        };
        // `x` counts as the file does (a run of RLE8 past the row's end
        // still counts); `at` is the pixel written next.
        let mut x = std::mem::take(&mut self.resume_at);
        let mut at = x;
        loop {
            let (count, value) = (byte(input)?, byte(input)?);
            match (count, value) {
                (0, 0) => return Ok(()),
                (0, 1) => {
                    self.ended = true;
                    return Ok(());
                }
                (0, 2) => {
                    let (dx, dy) = (usize::from(byte(input)?), u32::from(byte(input)?));
                    if dy > 0 {
                        if dy > below || x > width || x + dx > width {
                            return Err(bad("moves past the image"));
                        }
                        self.black_rows = dy - 1;
                        self.resume_at = x + dx;
                        return Ok(());
                    }
                    if at + dx > width {
                        return Err(bad("moves past the row"));
                    }
                    at += dx;
                    x += dx;
                }
                (0, n) => {
                    let n = usize::from(n);
                    let len = if self.four { n.div_ceil(2) } else { n };
                    self.scratch.resize(len + (len & 1), 0);
                    input
                        .read_exact(&mut self.scratch)
                        .map_err(|e| corrupt("BMP", e))?;
                    if at + n > width {
                        return Err(bad("runs past the row"));
                    }
                    for i in 0..n {
                        let index = if self.four {
                            (self.scratch[i / 2] >> (4 * (1 - i % 2))) & 0xF
                        } else {
                            self.scratch[i]
                        };
                        rgb[(at + i) * 3..][..3].copy_from_slice(&self.palette[usize::from(index)]);
                    }
                    at += n;
                    x += n;
                }
                (n, index) => {
                    let n = usize::from(n);
                    // RLE8 runs are cut at the row's end (ImageMagick
                    // writes longer ones); RLE4's are an error.
                    let fits = if self.four {
                        if at + n > width {
                            return Err(bad("runs past the row"));
                        }
                        n
                    } else {
                        n.min(width.saturating_sub(at))
                    };
                    for i in 0..fits {
                        let index = if self.four {
                            (index >> (4 * (1 - i % 2))) & 0xF
                        } else {
                            index
                        };
                        rgb[(at + i) * 3..][..3].copy_from_slice(&self.palette[usize::from(index)]);
                    }
                    at += fits;
                    x += n;
                }
            }
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
