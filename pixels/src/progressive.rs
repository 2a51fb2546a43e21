//! Progressive JPEGs, read by our own decoder in bounded memory.
//!
//! libjpeg keeps every DCT coefficient of a progressive image until its
//! last scan (2 bytes a sample, whatever the output scale: 1.2 GB for a
//! 200 MP 4:4:4 photo). A 600x600 result needs far less:
//!
//! - A centred square at least 4800 pixels wide needs only the 1/8-scale
//!   picture, and that is the DC coefficient of each block: the block's
//!   mean, what libjpeg's own `scale 1/8` computes. The DC scans (first
//!   and successive-approximation refinements) are decoded, one `i16` per
//!   block under the square; every AC scan is skipped by looking for the
//!   next marker, without Huffman-decoding it. The time is mostly reading
//!   the file.
//! - A narrower square is decoded at M/8 (the smallest scale that keeps it
//!   at least `STAGE_MIN` wide, as libjpeg would be asked to): every scan
//!   is Huffman-decoded, but only the top-left M x M coefficients of the
//!   blocks under the square are kept, the ones an M-point inverse DCT
//!   reads. A refinement scan cannot even be parsed without knowing which
//!   coefficients of each block are already nonzero, so every block keeps
//!   that history: one 64-bit word, 8 bytes a block a component instead of
//!   libjpeg's 128. Each scan stops after the square's last row of blocks
//!   (the rest is skipped to the next marker), so rows below the square
//!   need no history. The worst case is a wide CMYK file at the side
//!   limit, 20000x4799: 48 MB of history, 26 MB of kept coefficients.
//!
//! Then the components' M/8 pixels are upsampled (box, as libjpeg's
//! unfancy upsampling) and colour-converted by libjpeg's rules.
//!
//! Every JPEG's header goes through [`prelude`] (its bytes are kept, so the
//! libjpeg path replays them); anything it cannot read, or any frame it does
//! not take (baseline, arithmetic-coded, 12-bit), goes to libjpeg.

use std::io::BufRead;

use super::{
    Limits, Rejection, SIDE, Staged, check_decoded, corrupt, orientation_of, scaled_square,
};

const NAME: &str = "JPEG";

/// The narrowest centred square decoded from DC alone: 1/8 of it is the
/// output's side.
pub(super) const DC_MIN_SIDE: u32 = 8 * SIDE;

/// Most scans a file may have (libjpeg-turbo's own tools stop at 500).
const MAX_SCANS: usize = 1000;

/// A JPEG's header, up to and including its frame header (SOFn), and for
/// a sequential frame of several components its first scan header.
pub(super) struct Prelude {
    /// Every byte read so far, for libjpeg to read again.
    pub bytes: Vec<u8>,
    /// The frame, when the header was read to it without trouble.
    pub frame: Option<Frame>,
    /// A sequential frame's first scan header (its payload), when read.
    first_scan: Option<Vec<u8>>,
    tables: Tables,
    exif: Option<Vec<u8>>,
    /// APP14 "Adobe": its colour transform byte.
    adobe: Option<u8>,
    jfif: bool,
}

pub(super) struct Frame {
    /// The SOF marker: 0xC0 baseline, 0xC2 progressive (Huffman), ...
    pub marker: u8,
    pub precision: u8,
    pub width: u32,
    pub height: u32,
    components: Vec<Component>,
}

impl Prelude {
    /// What [`stage`] takes: a progressive, Huffman-coded, 8-bit frame, or
    /// a sequential one whose components come in more than one scan.
    pub fn is_ours(&self) -> bool {
        self.frame.as_ref().is_some_and(|f| {
            f.is_progressive_huffman() || (f.is_sequential_huffman() && self.several_scans(f))
        })
    }

    /// An 8-bit arithmetic-coded frame that libjpeg would hold whole:
    /// progressive, or sequential in several scans.
    pub fn is_buffered_arithmetic(&self) -> bool {
        self.frame.as_ref().is_some_and(|f| {
            f.precision == 8 && (f.marker == 0xCA || (f.marker == 0xC9 && self.several_scans(f)))
        })
    }

    /// A sequential frame whose first scan lacks some components.
    fn several_scans(&self, f: &Frame) -> bool {
        self.first_scan
            .as_ref()
            .and_then(|s| s.first())
            .is_some_and(|&ns| usize::from(ns) < f.components.len())
    }
}

impl Frame {
    /// A progressive, Huffman-coded, 8-bit frame.
    pub fn is_progressive_huffman(&self) -> bool {
        self.marker == 0xC2 && self.precision == 8
    }

    /// A sequential (baseline or extended), Huffman-coded, 8-bit frame.
    pub fn is_sequential_huffman(&self) -> bool {
        matches!(self.marker, 0xC0 | 0xC1) && self.precision == 8
    }

    /// The largest horizontal and vertical sampling factors: an MCU's
    /// size in blocks.
    fn max_sampling(&self) -> (usize, usize) {
        self.components
            .iter()
            .fold((1, 1), |(a, b), c| (a.max(c.h), b.max(c.v)))
    }

    /// What libjpeg's whole-image coefficient buffer takes: 64 `i16` for
    /// every block of every component, MCU padding included.
    pub fn coefficient_bytes(&self) -> u64 {
        let (hmax, vmax) = self.max_sampling();
        let mcus = u64::from(self.width).div_ceil(8 * hmax as u64)
            * u64::from(self.height).div_ceil(8 * vmax as u64);
        let per_mcu: u64 = self.components.iter().map(|c| (c.h * c.v) as u64).sum();
        mcus * per_mcu * 128
    }
}

#[derive(Clone, Copy)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant: usize,
}

#[derive(Default)]
struct Tables {
    /// Each quantisation table, in zigzag order as stored.
    quant: [Option<[u16; 64]>; 4],
    dc_huffman: [Option<Huffman>; 4],
    ac_huffman: [Option<Huffman>; 4],
    restart_interval: u16,
}

fn bad(detail: impl std::fmt::Display) -> Rejection {
    corrupt(NAME, detail)
}

/// Reads bytes, keeping a copy of each while `record` is on.
struct Input<R> {
    r: R,
    record: Option<Vec<u8>>,
}

impl<R: BufRead> Input<R> {
    fn byte(&mut self) -> Result<u8, Rejection> {
        let buf = self.r.fill_buf().map_err(bad)?;
        let Some(&b) = buf.first() else {
            return Err(bad("premature end of data"));
        };
        self.r.consume(1);
        if let Some(rec) = &mut self.record {
            rec.push(b);
        }
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, Rejection> {
        Ok(u16::from(self.byte()?) << 8 | u16::from(self.byte()?))
    }

    /// A marker segment's payload (its length field read here).
    fn segment(&mut self) -> Result<Vec<u8>, Rejection> {
        let len = self.u16()?;
        if len < 2 {
            return Err(bad("a marker segment shorter than its length field"));
        }
        (0..len - 2).map(|_| self.byte()).collect()
    }

    /// The next marker's code, past fill bytes and (as libjpeg tolerates
    /// them) stray bytes between segments.
    fn marker(&mut self) -> Result<u8, Rejection> {
        loop {
            if self.byte()? != 0xFF {
                continue;
            }
            let mut m = self.byte()?;
            while m == 0xFF {
                m = self.byte()?;
            }
            if m != 0 {
                return Ok(m);
            }
        }
    }
}

/// Reads a JPEG's header up to its frame; see [`Prelude`]. Never fails:
/// what it cannot read it leaves to libjpeg (`frame` is then `None`).
pub(super) fn prelude<R: BufRead>(input: &mut R) -> Prelude {
    let mut p = Prelude {
        bytes: Vec::new(),
        frame: None,
        first_scan: None,
        tables: Tables::default(),
        exif: None,
        adobe: None,
        jfif: false,
    };
    let mut inp = Input {
        r: &mut *input,
        record: Some(Vec::new()),
    };
    let frame = read_prelude(&mut inp, &mut p);
    p.bytes = inp.record.take().unwrap_or_default();
    p.frame = frame.ok();
    p
}

fn read_prelude<R: BufRead>(inp: &mut Input<R>, p: &mut Prelude) -> Result<Frame, Rejection> {
    if (inp.byte()?, inp.byte()?) != (0xFF, 0xD8) {
        return Err(bad("no start-of-image marker"));
    }
    loop {
        let m = inp.marker()?;
        match m {
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                let f = frame(m, &inp.segment()?)?;
                if matches!(m, 0xC0 | 0xC1 | 0xC9) && f.components.len() > 1 {
                    // Whether it has one scan (libjpeg streams it) or one
                    // for each component or group (libjpeg would keep all
                    // of its coefficients) shows at the first scan.
                    p.first_scan = read_to_scan(inp, p).ok();
                }
                return Ok(f);
            }
            0xD8..=0xDA => return Err(bad("no frame header before the data")),
            0xD0..=0xD7 | 0x01 => {}
            _ => header_segment(m, &inp.segment()?, p)?,
        }
    }
}

/// Reads on from the frame to the first scan header, which it returns.
fn read_to_scan<R: BufRead>(inp: &mut Input<R>, p: &mut Prelude) -> Result<Vec<u8>, Rejection> {
    loop {
        match inp.marker()? {
            0xDA => return inp.segment(),
            m @ 0xC0..=0xCF if m != 0xC4 && m != 0xCC => {
                return Err(bad("a second frame header"));
            }
            0xD8 | 0xD9 => return Err(bad("no scan")),
            0xD0..=0xD7 | 0x01 => {}
            m => header_segment(m, &inp.segment()?, p)?,
        }
    }
}

/// Takes in a segment before the data: tables, and the JFIF, Exif and
/// Adobe markers.
fn header_segment(m: u8, data: &[u8], p: &mut Prelude) -> Result<(), Rejection> {
    table_or_marker(m, data, &mut p.tables)?;
    match m {
        0xE0 if data.starts_with(b"JFIF\0") => p.jfif = true,
        0xE1 if data.starts_with(b"Exif\0\0") && p.exif.is_none() => {
            p.exif = Some(data[6..].to_vec());
        }
        0xEE if data.starts_with(b"Adobe") && data.len() >= 12 => {
            p.adobe = Some(data[11]);
        }
        _ => {}
    }
    Ok(())
}

fn frame(marker: u8, d: &[u8]) -> Result<Frame, Rejection> {
    if d.len() < 6 {
        return Err(bad("a short frame header"));
    }
    let n = usize::from(d[5]);
    if d.len() < 6 + 3 * n || !matches!(n, 1 | 3 | 4) {
        return Err(bad("a frame header with a bad component list"));
    }
    let components = (0..n)
        .map(|i| {
            let c = &d[6 + 3 * i..9 + 3 * i];
            let (h, v) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
                return Err(bad("a component with bad sampling factors or tables"));
            }
            Ok(Component {
                id: c[0],
                h,
                v,
                quant: usize::from(c[2]),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Frame {
        marker,
        precision: d[0],
        height: u32::from(u16::from_be_bytes([d[1], d[2]])),
        width: u32::from(u16::from_be_bytes([d[3], d[4]])),
        components,
    })
}

/// Takes in a table segment (DQT, DHT, DRI); other segments pass.
fn table_or_marker(m: u8, d: &[u8], t: &mut Tables) -> Result<(), Rejection> {
    match m {
        0xDB => {
            let mut i = 0;
            while i < d.len() {
                let (precision, id) = (d[i] >> 4, usize::from(d[i] & 15));
                let len = if precision == 0 { 64 } else { 128 };
                if id > 3 || i + 1 + len > d.len() {
                    return Err(bad("a bad quantisation table"));
                }
                let mut q = [0u16; 64];
                for (k, v) in q.iter_mut().enumerate() {
                    *v = if precision == 0 {
                        u16::from(d[i + 1 + k])
                    } else {
                        u16::from_be_bytes([d[i + 1 + 2 * k], d[i + 2 + 2 * k]])
                    };
                }
                t.quant[id] = Some(q);
                i += 1 + len;
            }
        }
        0xC4 => {
            let mut i = 0;
            while i < d.len() {
                if i + 17 > d.len() {
                    return Err(bad("a bad Huffman table"));
                }
                let (class, id) = (d[i] >> 4, usize::from(d[i] & 15));
                let counts: [u8; 16] = d[i + 1..i + 17].try_into().expect("16 bytes");
                let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
                if class > 1 || id > 3 || i + 17 + total > d.len() {
                    return Err(bad("a bad Huffman table"));
                }
                let table = Some(Huffman::new(&counts, &d[i + 17..i + 17 + total])?);
                if class == 0 {
                    t.dc_huffman[id] = table;
                } else {
                    t.ac_huffman[id] = table;
                }
                i += 17 + total;
            }
        }
        0xDD => {
            if d.len() < 2 {
                return Err(bad("a bad restart interval"));
            }
            t.restart_interval = u16::from_be_bytes([d[0], d[1]]);
        }
        _ => {}
    }
    Ok(())
}

/// A canonical Huffman table (JPEG's): a 9-bit lookup for the short codes,
/// the per-length limits for the rest.
#[derive(Clone)]
struct Huffman {
    /// `len << 8 | symbol` for codes of up to 9 bits, by their next 9 bits;
    /// 0 when the code is longer.
    fast: Vec<u16>,
    maxcode: [i32; 17],
    valptr: [i32; 17],
    mincode: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Self, Rejection> {
        let mut t = Huffman {
            fast: vec![0; 512],
            maxcode: [-1; 17],
            valptr: [0; 17],
            mincode: [0; 17],
            symbols: symbols.to_vec(),
        };
        let mut code: i32 = 0;
        let mut k: i32 = 0;
        for len in 1..=16usize {
            let n = i32::from(counts[len - 1]);
            t.valptr[len] = k;
            t.mincode[len] = code;
            for _ in 0..n {
                if code >= 1 << len || k as usize >= symbols.len() {
                    return Err(bad("a Huffman table with too many codes"));
                }
                if len <= 9 {
                    let shift = 9 - len;
                    let first = (code << shift) as usize;
                    for e in &mut t.fast[first..first + (1 << shift)] {
                        *e = (len as u16) << 8 | u16::from(symbols[k as usize]);
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                t.maxcode[len] = code - 1;
            }
            code <<= 1;
        }
        Ok(t)
    }
}

/// The entropy-coded data of a scan, bit by bit, MSB first: stuffed zero
/// bytes removed, the marker that ends it kept.
struct Bits<'a, R> {
    r: &'a mut R,
    acc: u64,
    n: u32,
    /// Bits appended after a marker was met (zeros): reading into them
    /// means the data ended early.
    pad: u32,
    marker: Option<u8>,
}

impl<'a, R: BufRead> Bits<'a, R> {
    fn new(r: &'a mut R) -> Self {
        Bits {
            r,
            acc: 0,
            n: 0,
            pad: 0,
            marker: None,
        }
    }

    fn next_byte(&mut self) -> Result<u8, Rejection> {
        let buf = self.r.fill_buf().map_err(bad)?;
        let Some(&b) = buf.first() else {
            return Err(bad("premature end of data"));
        };
        self.r.consume(1);
        Ok(b)
    }

    fn fill(&mut self) -> Result<(), Rejection> {
        while self.n <= 56 {
            // Plain bytes (no 0xFF) straight from the reader's buffer, as
            // many as fit; a 0xFF, a marker or an empty buffer one at a
            // time below.
            if self.marker.is_none() {
                let buf = self.r.fill_buf().map_err(bad)?;
                let mut used = 0;
                while self.n <= 56 && used < buf.len() && buf[used] != 0xFF {
                    self.acc |= u64::from(buf[used]) << (56 - self.n);
                    self.n += 8;
                    used += 1;
                }
                self.r.consume(used);
                if self.n > 56 {
                    break;
                }
            }
            let byte = if self.marker.is_some() {
                self.pad += 8;
                0
            } else {
                let b = self.next_byte()?;
                if b == 0xFF {
                    let mut m = self.next_byte()?;
                    while m == 0xFF {
                        m = self.next_byte()?;
                    }
                    if m == 0 {
                        0xFF
                    } else {
                        self.marker = Some(m);
                        self.pad += 8;
                        0
                    }
                } else {
                    b
                }
            };
            self.acc |= u64::from(byte) << (56 - self.n);
            self.n += 8;
        }
        Ok(())
    }

    fn consume(&mut self, k: u32) -> Result<(), Rejection> {
        if k > self.n - self.pad {
            return Err(bad("premature end of data in a scan"));
        }
        self.acc <<= k;
        self.n -= k;
        Ok(())
    }

    fn bits(&mut self, k: u32) -> Result<u32, Rejection> {
        if k == 0 {
            return Ok(0);
        }
        if self.n < k {
            self.fill()?;
        }
        let v = (self.acc >> (64 - k)) as u32;
        self.consume(k)?;
        Ok(v)
    }

    fn decode(&mut self, t: &Huffman) -> Result<u8, Rejection> {
        if self.n < 16 {
            self.fill()?;
        }
        let e = t.fast[(self.acc >> 55) as usize];
        if e != 0 {
            self.consume(u32::from(e >> 8))?;
            return Ok(e as u8);
        }
        let peek = (self.acc >> 48) as i32;
        let mut len = 10;
        while len <= 16 && (peek >> (16 - len)) > t.maxcode[len] {
            len += 1;
        }
        if len > 16 {
            return Err(bad("a bad Huffman code"));
        }
        let code = peek >> (16 - len);
        let i = t.valptr[len] + code - t.mincode[len];
        let s = *t
            .symbols
            .get(i as usize)
            .ok_or_else(|| bad("a bad Huffman code"))?;
        self.consume(len as u32)?;
        Ok(s)
    }

    /// At a restart interval's end: the rest of the byte dropped, the RST
    /// marker expected next.
    fn restart(&mut self) -> Result<(), Rejection> {
        let m = match self.marker.take() {
            Some(m) => m,
            None => {
                // Whole bytes still buffered are data the interval did not
                // use: a marker must follow them.
                let mut found = None;
                while found.is_none() {
                    let b = self.next_byte()?;
                    if b == 0xFF {
                        let mut m = self.next_byte()?;
                        while m == 0xFF {
                            m = self.next_byte()?;
                        }
                        if m != 0 {
                            found = Some(m);
                        }
                    }
                }
                found.expect("set above")
            }
        };
        if !(0xD0..=0xD7).contains(&m) {
            return Err(bad("a restart marker is missing"));
        }
        (self.acc, self.n, self.pad) = (0, 0, 0);
        Ok(())
    }

    /// The marker after the scan's data.
    fn end(mut self) -> Result<u8, Rejection> {
        match self.marker.take() {
            Some(m) => Ok(m),
            None => skip_entropy(self.r),
        }
    }
}

/// Reads past entropy-coded data (stuffed bytes, restart markers) to the
/// next real marker, which it returns, without decoding anything.
fn skip_entropy<R: BufRead>(r: &mut R) -> Result<u8, Rejection> {
    let mut after_ff = false;
    loop {
        let buf = r.fill_buf().map_err(bad)?;
        if buf.is_empty() {
            return Err(bad("premature end of data in a scan"));
        }
        let mut i = 0;
        if after_ff {
            match buf[0] {
                0x00 | 0xD0..=0xD7 => after_ff = false,
                0xFF => {}
                m => {
                    r.consume(1);
                    return Ok(m);
                }
            }
            i = 1;
        }
        while let Some(p) = memchr::memchr(0xFF, &buf[i..]) {
            let j = i + p;
            match buf.get(j + 1) {
                None => {
                    after_ff = true;
                    break;
                }
                Some(0x00 | 0xD0..=0xD7) => i = j + 2,
                Some(0xFF) => i = j + 1,
                Some(&m) => {
                    r.consume(j + 2);
                    return Ok(m);
                }
            }
            if i >= buf.len() {
                break;
            }
        }
        let n = buf.len();
        r.consume(n);
    }
}

/// The zigzag order: the row-major index in its block of the k-th
/// coefficient of a scan.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// What a decode at M/8 keeps of a block: its top-left M x M
/// coefficients (the only ones an M-point inverse DCT reads).
struct Scale {
    m: usize,
    /// The slot of zigzag coefficient k among the kept ones, or `NONE`.
    slot: [u8; 64],
    /// The zigzag index of each slot (row-major in the M x M corner).
    zigzag: Vec<usize>,
    /// The M-point inverse DCT of JPEG's 8-point coefficients:
    /// `basis[x * m + u] = C(u) / 2 * cos((2x + 1) u pi / 2M)`, C(0) = 1/sqrt 2.
    basis: Vec<f32>,
}

const NONE: u8 = u8::MAX;

impl Scale {
    fn new(m: usize) -> Self {
        let mut slot = [NONE; 64];
        let mut zigzag = vec![0; m * m];
        for (k, &n) in ZIGZAG.iter().enumerate() {
            let (v, u) = (usize::from(n) / 8, usize::from(n) % 8);
            if v < m && u < m {
                slot[k] = (v * m + u) as u8;
                zigzag[v * m + u] = k;
            }
        }
        let mut basis = vec![0f32; m * m];
        for x in 0..m {
            for u in 0..m {
                let c = if u == 0 {
                    std::f64::consts::FRAC_1_SQRT_2
                } else {
                    1.0
                };
                let angle = (2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / (2 * m) as f64;
                basis[x * m + u] = (c / 2.0 * angle.cos()) as f32;
            }
        }
        Scale {
            m,
            slot,
            zigzag,
            basis,
        }
    }
}

/// One component: the kept coefficients of the blocks under the centred
/// square, and (when AC scans are read) which coefficients of every block
/// are nonzero so far, which a refinement scan needs to be parsed at all.
struct Plane {
    /// The scale of this component's blocks: the frame's M, or more for
    /// subsampled chroma (libjpeg decodes a 4:2:0 chroma block at 2M, not
    /// at M then upsampled).
    scale: Scale,
    /// Its pixel for the frame's pixel x at M/8 is `x * x_ratio.0 /
    /// x_ratio.1`; likewise down.
    x_ratio: (usize, usize),
    y_ratio: (usize, usize),
    /// Blocks wide and high of the component itself (no MCU padding).
    blocks_w: usize,
    blocks_h: usize,
    /// The blocks kept: those the square's pixels are made from.
    cols: std::ops::Range<usize>,
    rows: std::ops::Range<usize>,
    /// M x M coefficients a kept block, row by row.
    coefs: Vec<i16>,
    /// Bit k: zigzag coefficient k of the block is nonzero. Every block
    /// of the component, row by row; empty at 1/8.
    nonzero: Vec<u64>,
    /// The quantisation table (zigzag order), latched at the component's
    /// first scan as libjpeg does.
    quant: Option<[u16; 64]>,
    dc_scanned: bool,
}

impl Plane {
    /// Where block (bx, by)'s kept coefficients start, if it is kept.
    fn kept(&self, bx: usize, by: usize) -> Option<usize> {
        let mm = self.scale.m * self.scale.m;
        (self.cols.contains(&bx) && self.rows.contains(&by))
            .then(|| ((by - self.rows.start) * self.cols.len() + bx - self.cols.start) * mm)
    }

    /// The kept blocks' pixels at M/8: inverse DCT, level shift, clamp.
    fn samples(&self) -> Samples {
        let s = &self.scale;
        let (m, mm) = (s.m, s.m * s.m);
        let quant = self.quant.expect("latched with the first scan");
        let width = self.cols.len() * m;
        let mut data = vec![0u8; width * self.rows.len() * m];
        let (mut f, mut tmp) = (vec![0f32; mm], vec![0f32; mm]);
        for (i, block) in self.coefs.chunks_exact(mm).enumerate() {
            let (bx, by) = (i % self.cols.len(), i / self.cols.len());
            for (j, &c) in block.iter().enumerate() {
                f[j] = f32::from(c) * f32::from(quant[s.zigzag[j]]);
            }
            // Rows (v) then columns (u): tmp[v][x], then out[y][x].
            for v in 0..m {
                for x in 0..m {
                    tmp[v * m + x] = (0..m).map(|u| s.basis[x * m + u] * f[v * m + u]).sum();
                }
            }
            for y in 0..m {
                let row = &mut data[(by * m + y) * width + bx * m..][..m];
                for (x, px) in row.iter_mut().enumerate() {
                    let v: f32 = (0..m).map(|v| s.basis[y * m + v] * tmp[v * m + x]).sum();
                    // Rounded half up by a saturating cast (no libm call).
                    *px = (v + 128.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
        Samples {
            data,
            width,
            height: self.rows.len() * m,
            x0: self.cols.start * m,
            y0: self.rows.start * m,
            x_ratio: self.x_ratio,
            y_ratio: self.y_ratio,
        }
    }
}

/// A component's pixels over the square, at M/8 of its own resolution.
struct Samples {
    data: Vec<u8>,
    width: usize,
    height: usize,
    /// Where they start in the component's whole (scaled) plane.
    x0: usize,
    y0: usize,
    x_ratio: (usize, usize),
    y_ratio: (usize, usize),
}

impl Samples {
    /// The component's value at the frame's pixel (x, y) at M/8.
    fn at(&self, x: usize, y: usize) -> u8 {
        let (x, y) = (
            x * self.x_ratio.0 / self.x_ratio.1,
            y * self.y_ratio.0 / self.y_ratio.1,
        );
        let x = x.saturating_sub(self.x0).min(self.width - 1);
        let y = y.saturating_sub(self.y0).min(self.height - 1);
        self.data[y * self.width + x]
    }
}

/// Decodes a progressive frame into its centred square at M/8 scale (the
/// smallest that keeps the square at least `STAGE_MIN` wide; 1/8, DC
/// alone, for a square of [`DC_MIN_SIDE`] or more).
pub(super) fn stage<R: BufRead>(
    p: Prelude,
    input: R,
    limits: &Limits,
) -> Result<Staged, Rejection> {
    let frame = p.frame.as_ref().expect("stage is given a read frame");
    let side = frame.width.min(frame.height);
    let m = if side >= DC_MIN_SIDE {
        1
    } else {
        super::jpeg::scale_for(side) as usize
    };
    stage_at(p, input, limits, m)
}

/// [`stage`] at M/8.
pub(super) fn stage_at<R: BufRead>(
    mut p: Prelude,
    mut input: R,
    limits: &Limits,
    m: usize,
) -> Result<Staged, Rejection> {
    let frame = p.frame.take().expect("stage is given a read frame");
    let (w, h) = (frame.width, frame.height);
    // Zero or oversized dimensions, before anything is allocated.
    super::check_dimensions(NAME, w.into(), h.into(), limits)?;
    let (hmax, vmax) = frame.max_sampling();
    let mcus_x = (w as usize).div_ceil(8 * hmax);
    let mcus_y = (h as usize).div_ceil(8 * vmax);
    // The square at M/8, in whole pixels of libjpeg's output size.
    let (ow, oh) = ((w as usize * m).div_ceil(8), (h as usize * m).div_ceil(8));
    let sq = scaled_square(w, h, m as f64 / 8.0, ow, oh);
    let (c0, c1, r0, r1) = (sq.cols.start, sq.cols.end, sq.rows.start, sq.rows.end);
    // The blocks of a component its pixels there come from (what scaling
    // leaves of subsampling is made up by repeating, libjpeg's box
    // upsampling).
    let span = |lo: usize, hi: usize, (num, den): (usize, usize), mc: usize, n: usize| {
        let end = ((hi - 1) * num / den / mc + 1).min(n);
        (lo * num / den / mc).min(end - 1)..end
    };
    let mut planes: Vec<Plane> = frame
        .components
        .iter()
        .map(|c| {
            // libjpeg-turbo's rule (jdmaster.c): double a component's
            // block scale while its subsampling allows, up to 8.
            let mut mc = m;
            while m > 1
                && mc < 8
                && (hmax * m).is_multiple_of(c.h * mc * 2)
                && (vmax * m).is_multiple_of(c.v * mc * 2)
            {
                mc *= 2;
            }
            let (x_ratio, y_ratio) = ((c.h * mc, hmax * m), (c.v * mc, vmax * m));
            let blocks_w = (w as usize * c.h).div_ceil(hmax).div_ceil(8);
            let blocks_h = (h as usize * c.v).div_ceil(vmax).div_ceil(8);
            let cols = span(c0, c1, x_ratio, mc, blocks_w);
            let rows = span(r0, r1, y_ratio, mc, blocks_h);
            Plane {
                scale: Scale::new(mc),
                x_ratio,
                y_ratio,
                blocks_w,
                blocks_h,
                coefs: Vec::new(),
                nonzero: Vec::new(),
                cols,
                rows,
                quant: None,
                dc_scanned: false,
            }
        })
        .collect();
    // What this path holds: the kept coefficients, a word of history a
    // block when AC scans are read, each component's square, the RGB.
    // At 1/8 a progressive file's AC scans are skipped, and only they need
    // a history.
    let reads_ac = m > 1;
    let history = reads_ac && frame.is_progressive_huffman();
    let held: usize = planes
        .iter()
        .map(|pl| {
            let kept = pl.cols.len() * pl.rows.len() * pl.scale.m * pl.scale.m;
            let history = if history {
                pl.blocks_w * pl.rows.end * 8
            } else {
                0
            };
            kept * 3 + history
        })
        .sum::<usize>()
        + (c1 - c0) * (r1 - r0) * 3;
    check_decoded(NAME, w.into(), h.into(), held as u64, limits)?;
    for pl in &mut planes {
        pl.coefs = vec![0; pl.cols.len() * pl.rows.len() * pl.scale.m * pl.scale.m];
        if history {
            // Rows below the square are never decoded (each scan stops
            // at its last row), so they need no history.
            pl.nonzero = vec![0; pl.blocks_w * pl.rows.end];
        }
    }
    let geometry = Geometry {
        frame: &frame,
        reads_ac,
        mcus: (mcus_x, mcus_y),
    };
    let mut scans = usize::from(p.first_scan.is_some());
    let mut marker = match p.first_scan.take() {
        Some(header) => scan(&header, &geometry, &p.tables, &mut planes, &mut input)?,
        None => Input {
            r: &mut input,
            record: None,
        }
        .marker()?,
    };
    loop {
        match marker {
            0xD9 => break,
            0xD8 => return Err(bad("a second start-of-image marker")),
            0xDA => {
                scans += 1;
                if scans > MAX_SCANS {
                    return Err(bad(format!("more than {MAX_SCANS} scans")));
                }
                let header = Input {
                    r: &mut input,
                    record: None,
                }
                .segment()?;
                marker = scan(&header, &geometry, &p.tables, &mut planes, &mut input)?;
            }
            0xC0..=0xCF if marker != 0xC4 && marker != 0xCC => {
                return Err(bad("a second frame header"));
            }
            0xD0..=0xD7 | 0x01 => {
                marker = Input {
                    r: &mut input,
                    record: None,
                }
                .marker()?;
            }
            m => {
                let mut inp = Input {
                    r: &mut input,
                    record: None,
                };
                let data = inp.segment()?;
                table_or_marker(m, &data, &mut p.tables)?;
                marker = inp.marker()?;
            }
        }
    }
    if planes.iter().any(|pl| !pl.dc_scanned) {
        return Err(bad("a component has no DC scan"));
    }
    let samples: Vec<Samples> = planes.iter().map(Plane::samples).collect();
    drop(planes);
    let space = colour_space(&frame, &p);
    let n = frame.components.len();
    let mut rgb = Vec::with_capacity((c1 - c0) * (r1 - r0) * 3);
    let mut px = [0u8; 4];
    for y in r0..r1 {
        for x in c0..c1 {
            for (p, s) in px.iter_mut().zip(&samples) {
                *p = s.at(x, y);
            }
            space.to_rgb(&px[..n], &mut rgb);
        }
    }
    Ok(Staged {
        rgb,
        width: (c1 - c0) as u32,
        height: (r1 - r0) as u32,
        crop: sq.crop,
        orientation: orientation_of(p.exif.as_deref()),
        source: (w, h),
    })
}

/// What a scan is read against.
struct Geometry<'a> {
    frame: &'a Frame,
    /// Whether AC scans are decoded (skipped at 1/8).
    reads_ac: bool,
    /// MCUs across and down.
    mcus: (usize, usize),
}

/// Reads one scan into the planes: DC scans always, AC scans when the
/// scale reads them (skipped to the next marker otherwise). Returns the
/// marker after it.
fn scan<R: BufRead>(
    header: &[u8],
    g: &Geometry<'_>,
    tables: &Tables,
    planes: &mut [Plane],
    input: &mut R,
) -> Result<u8, Rejection> {
    let ns = usize::from(*header.first().ok_or_else(|| bad("an empty scan header"))?);
    if !(1..=4).contains(&ns) || header.len() < 1 + 2 * ns + 3 {
        return Err(bad("a bad scan header"));
    }
    let mut members = Vec::with_capacity(ns);
    for i in 0..ns {
        let id = header[1 + 2 * i];
        let (td, ta) = (
            usize::from(header[2 + 2 * i] >> 4),
            usize::from(header[2 + 2 * i] & 15),
        );
        let c = g
            .frame
            .components
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| bad("a scan names a component the frame lacks"))?;
        if td > 3 || ta > 3 || members.iter().any(|&(d, _, _)| d == c) {
            return Err(bad("a bad scan header"));
        }
        members.push((c, td, ta));
    }
    let (ss, se, ah, al) = (
        usize::from(header[1 + 2 * ns]),
        usize::from(header[2 + 2 * ns]),
        u32::from(header[3 + 2 * ns] >> 4),
        u32::from(header[3 + 2 * ns] & 15),
    );
    if al > 13 || (ah != 0 && al + 1 != ah) {
        return Err(bad("a bad successive approximation"));
    }
    // libjpeg latches a component's quantisation table at its first scan.
    for &(c, _, _) in &members {
        let pl = &mut planes[c];
        if pl.quant.is_none() {
            let q = tables.quant[g.frame.components[c].quant]
                .ok_or_else(|| bad("a quantisation table is missing"))?;
            pl.quant = Some(q);
        }
    }
    // A sequential scan carries each block whole, DC then AC.
    let sequential = g.frame.is_sequential_huffman();
    if sequential && (ss, se, ah, al) != (0, 63, 0, 0) {
        return Err(bad("a bad sequential scan"));
    }
    if ss != 0 {
        if se < ss || se > 63 || ns != 1 {
            return Err(bad("a bad AC scan"));
        }
        let pl = &mut planes[members[0].0];
        if !g.reads_ac {
            return skip_entropy(input);
        }
        let huffman = tables.ac_huffman[members[0].2]
            .as_ref()
            .ok_or_else(|| bad("an AC scan's Huffman table is missing"))?;
        let band = Band { ss, se, al };
        let restart = usize::from(tables.restart_interval);
        return ac_scan(pl, huffman, band, ah != 0, restart, input);
    }
    if se != 0 && !sequential {
        return Err(bad("a bad DC scan"));
    }
    let first = ah == 0;
    let huffman: Vec<Option<&Huffman>> = members
        .iter()
        .map(|&(_, td, _)| tables.dc_huffman[td].as_ref())
        .collect();
    if first && huffman.iter().any(Option::is_none) {
        return Err(bad("a DC scan's Huffman table is missing"));
    }
    let ac: Vec<Option<&Huffman>> = members
        .iter()
        .map(|&(_, _, ta)| tables.ac_huffman[ta].as_ref())
        .collect();
    if sequential && ac.iter().any(Option::is_none) {
        return Err(bad("a scan's AC Huffman table is missing"));
    }
    for &(c, _, _) in &members {
        if first {
            planes[c].dc_scanned = true;
        } else if !planes[c].dc_scanned {
            return Err(bad("a DC refinement before the first DC scan"));
        }
    }
    let restart = usize::from(tables.restart_interval);
    let mut bits = Bits::new(input);
    let mut pred = [0i32; 4];
    // An interleaved scan goes MCU by MCU (padding blocks included), a
    // single component's block by block.
    let interleaved = ns > 1;
    let (units_x, units_y) = if interleaved {
        g.mcus
    } else {
        let pl = &planes[members[0].0];
        (pl.blocks_w, pl.blocks_h)
    };
    let mut unit = 0usize;
    let mut spare = 0i16;
    let mut spare_history = 0u64;
    // The rows of units down to the last holding a block of the square;
    // the rest of the scan is skipped unread.
    let last_row = members
        .iter()
        .map(|&(c, _, _)| {
            let v = if interleaved {
                g.frame.components[c].v
            } else {
                1
            };
            planes[c].rows.end.div_ceil(v)
        })
        .max()
        .unwrap_or(units_y)
        .min(units_y);
    for uy in 0..last_row {
        for ux in 0..units_x {
            if restart > 0 && unit > 0 && unit.is_multiple_of(restart) {
                bits.restart()?;
                pred = [0; 4];
            }
            unit += 1;
            for (i, &(c, _, _)) in members.iter().enumerate() {
                let comp = g.frame.components[c];
                let (bh, bv) = if interleaved {
                    (comp.h, comp.v)
                } else {
                    (1, 1)
                };
                let pl = &mut planes[c];
                let mm = pl.scale.m * pl.scale.m;
                for v in 0..bv {
                    for h in 0..bh {
                        let (bx, by) = (ux * bh + h, uy * bv + v);
                        let at = pl.kept(bx, by);
                        let slot = match at {
                            Some(at) => &mut pl.coefs[at],
                            None => &mut spare,
                        };
                        dc_block(first, huffman[i], al, &mut pred[i], slot, &mut bits)?;
                        if sequential {
                            let block = Block {
                                nonzero: &mut spare_history,
                                kept: at.map(|at| &mut pl.coefs[at..at + mm]),
                                slot: &pl.scale.slot,
                            };
                            let band = Band {
                                ss: 1,
                                se: 63,
                                al: 0,
                            };
                            let huffman = ac[i].expect("checked above");
                            ac_first(block, band, huffman, None, &mut bits)?;
                        }
                    }
                }
            }
        }
    }
    bits.end()
}

/// One block of a DC scan: the first scan's difference (Huffman-coded
/// size, then its bits), or a refinement's one bit.
fn dc_block<R: BufRead>(
    first: bool,
    huffman: Option<&Huffman>,
    al: u32,
    pred: &mut i32,
    slot: &mut i16,
    bits: &mut Bits<'_, R>,
) -> Result<(), Rejection> {
    if first {
        let s = bits.decode(huffman.expect("checked by the scan"))?;
        if s > 11 {
            return Err(bad("a DC difference out of range"));
        }
        *pred += extend(bits.bits(u32::from(s))?, s);
        *slot = i16::try_from(*pred << al).map_err(|_| bad("a DC value out of range"))?;
    } else if bits.bits(1)? == 1 {
        *slot |= 1 << al;
    }
    Ok(())
}

/// The value of `s` magnitude bits `v` (JPEG's EXTEND).
fn extend(v: u32, s: u8) -> i32 {
    let v = v as i32;
    if s > 0 && v < 1 << (s - 1) {
        v - (1 << s) + 1
    } else {
        v
    }
}

/// An AC scan's spectral band and point transform.
#[derive(Clone, Copy)]
struct Band {
    ss: usize,
    se: usize,
    al: u32,
}

/// Reads an AC scan of one component, block by block, keeping the kept
/// coefficients' values and every block's nonzero history.
fn ac_scan<R: BufRead>(
    pl: &mut Plane,
    huffman: &Huffman,
    band: Band,
    refine: bool,
    restart: usize,
    input: &mut R,
) -> Result<u8, Rejection> {
    let mm = pl.scale.m * pl.scale.m;
    let mut bits = Bits::new(input);
    let mut eobrun = 0u32;
    let mut unit = 0usize;
    // Blocks below the square's last row matter to nothing: past them, the
    // rest of the scan is skipped to its marker unread.
    for by in 0..pl.rows.end {
        for bx in 0..pl.blocks_w {
            if restart > 0 && unit > 0 && unit.is_multiple_of(restart) {
                bits.restart()?;
                eobrun = 0;
            }
            unit += 1;
            let kept = pl.kept(bx, by);
            let block = Block {
                nonzero: &mut pl.nonzero[by * pl.blocks_w + bx],
                kept: kept.map(|at| &mut pl.coefs[at..at + mm]),
                slot: &pl.scale.slot,
            };
            if refine {
                ac_refine(block, band, huffman, &mut eobrun, &mut bits)?;
            } else {
                ac_first(block, band, huffman, Some(&mut eobrun), &mut bits)?;
            }
        }
    }
    bits.end()
}

/// One block's state as an AC scan sees it.
struct Block<'a> {
    nonzero: &'a mut u64,
    /// The kept coefficients, for a block under the square.
    kept: Option<&'a mut [i16]>,
    slot: &'a [u8; 64],
}

impl Block<'_> {
    fn set(&mut self, k: usize, v: i32) -> Result<(), Rejection> {
        *self.nonzero |= 1 << k;
        if let Some(kept) = &mut self.kept
            && self.slot[k] != NONE
        {
            kept[usize::from(self.slot[k])] =
                i16::try_from(v).map_err(|_| bad("an AC value out of range"))?;
        }
        Ok(())
    }

    /// The correction bits of the nonzero coefficients in `which` (a bit
    /// each, in order): read one by one for a kept block, skipped together
    /// otherwise.
    fn corrections<R: BufRead>(
        &mut self,
        mut which: u64,
        p1: i16,
        bits: &mut Bits<'_, R>,
    ) -> Result<(), Rejection> {
        if self.kept.is_some() {
            while which != 0 {
                let k = which.trailing_zeros() as usize;
                which &= which - 1;
                if bits.bits(1)? == 1 {
                    self.correct(k, p1);
                }
            }
        } else {
            let mut n = which.count_ones();
            while n > 0 {
                let step = n.min(32);
                bits.bits(step)?;
                n -= step;
            }
        }
        Ok(())
    }

    /// A refinement's correction bit for nonzero coefficient k: 1 means
    /// its magnitude grows by `p1`.
    fn correct(&mut self, k: usize, p1: i16) {
        if let Some(kept) = &mut self.kept
            && self.slot[k] != NONE
        {
            let c = &mut kept[usize::from(self.slot[k])];
            if *c & p1 == 0 {
                // The bit was clear, so this cannot carry (or overflow,
                // but for i16::MIN, which a hostile file can make).
                *c = if *c >= 0 {
                    *c + p1
                } else {
                    c.saturating_sub(p1)
                };
            }
        }
    }
}

/// The end-of-band run a symbol of run `r` (and no size) starts:
/// 2^r plus r more bits.
fn eob_run<R: BufRead>(r: u8, bits: &mut Bits<'_, R>) -> Result<u32, Rejection> {
    Ok((1 << r) + bits.bits(u32::from(r))?)
}

/// A block of a first AC scan (libjpeg's `decode_mcu_AC_first`), or
/// with no `eobrun` the AC part of a sequential scan's block (its
/// `decode_mcu`: an end of block ends that block only, no run follows).
fn ac_first<R: BufRead>(
    mut b: Block<'_>,
    Band { ss, se, al }: Band,
    huffman: &Huffman,
    mut eobrun: Option<&mut u32>,
    bits: &mut Bits<'_, R>,
) -> Result<(), Rejection> {
    if let Some(run) = eobrun.as_deref_mut()
        && *run > 0
    {
        *run -= 1;
        return Ok(());
    }
    let mut k = ss;
    while k <= se {
        let rs = bits.decode(huffman)?;
        let (r, s) = (rs >> 4, rs & 15);
        if s == 0 {
            if r < 15 {
                if let Some(run) = eobrun {
                    *run = eob_run(r, bits)? - 1;
                }
                break;
            }
            k += 16;
            continue;
        }
        k += usize::from(r);
        if k > se {
            return Err(bad("an AC coefficient past its scan's band"));
        }
        let v = extend(bits.bits(u32::from(s))?, s);
        b.set(k, v << al)?;
        k += 1;
    }
    Ok(())
}

/// A block of an AC refinement scan (libjpeg's `decode_mcu_AC_refine`):
/// a correction bit for each coefficient already nonzero, and new ones of
/// magnitude 1 placed by runs of zero coefficients.
fn ac_refine<R: BufRead>(
    mut b: Block<'_>,
    Band { ss, se, al }: Band,
    huffman: &Huffman,
    eobrun: &mut u32,
    bits: &mut Bits<'_, R>,
) -> Result<(), Rejection> {
    let p1 = 1i16 << al;
    let mut k = ss;
    if *eobrun == 0 {
        while k <= se {
            let rs = bits.decode(huffman)?;
            let (mut r, s) = (rs >> 4, rs & 15);
            let mut new = 0;
            if s != 0 {
                if s != 1 {
                    return Err(bad("a bad Huffman code (a refinement of size > 1)"));
                }
                new = if bits.bits(1)? == 1 { 1 } else { -1 };
            } else if r != 15 {
                *eobrun = eob_run(r, bits)?;
                break;
            }
            // Past the nonzero coefficients (a correction bit each) and r
            // zero ones, to the zero one the new value goes to (the band's
            // end if there is none): its position is the (r+1)-th zero.
            let band = (u64::MAX >> (63 - se)) & (u64::MAX << k);
            let mut zeros = !*b.nonzero & band;
            while r > 0 && zeros != 0 {
                zeros &= zeros - 1;
                r -= 1;
            }
            let target = (zeros.trailing_zeros() as usize).min(se + 1);
            let before = u64::MAX.checked_shl(target as u32).map_or(u64::MAX, |m| !m);
            b.corrections(*b.nonzero & band & before, p1, bits)?;
            k = target;
            if new != 0 {
                if k > se {
                    return Err(bad("an AC coefficient past its scan's band"));
                }
                b.set(k, new * i32::from(p1))?;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        // A correction bit for each nonzero coefficient left in the band:
        // read one by one for a kept block, skipped together otherwise.
        let left = if k > se {
            0
        } else {
            *b.nonzero & (u64::MAX >> (63 - se)) & (u64::MAX << k)
        };
        b.corrections(left, p1, bits)?;
        *eobrun -= 1;
    }
    Ok(())
}

/// How the components become RGB (libjpeg's rules for the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Space {
    Grey,
    YCbCr,
    Rgb,
    /// Inverted (Adobe) or not.
    Cmyk(bool),
    Ycck,
}

fn colour_space(frame: &Frame, p: &Prelude) -> Space {
    match frame.components.len() {
        1 => Space::Grey,
        3 => {
            let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
            if p.jfif {
                Space::YCbCr
            } else if let Some(t) = p.adobe {
                if t == 0 { Space::Rgb } else { Space::YCbCr }
            } else if ids == b"RGB" {
                Space::Rgb
            } else {
                Space::YCbCr
            }
        }
        _ => match p.adobe {
            Some(2) => Space::Ycck,
            Some(_) => Space::Cmyk(true),
            None => Space::Cmyk(false),
        },
    }
}

fn ycc_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    [
        y + 1.402 * cr,
        y - 0.344_136 * cb - 0.714_136 * cr,
        y + 1.772 * cb,
    ]
    .map(|v| v.round().clamp(0.0, 255.0) as u8)
}

impl Space {
    fn to_rgb(self, px: &[u8], out: &mut Vec<u8>) {
        match self {
            Space::Grey => out.extend([px[0]; 3]),
            Space::Rgb => out.extend_from_slice(&px[..3]),
            Space::YCbCr => out.extend(ycc_to_rgb(px[0], px[1], px[2])),
            Space::Cmyk(inverted) => super::jpeg::cmyk_to_rgb(&px[..4], inverted, out),
            Space::Ycck => {
                let [r, g, b] = ycc_to_rgb(px[0], px[1], px[2]);
                super::jpeg::cmyk_to_rgb(&[255 - r, 255 - g, 255 - b, px[3]], true, out);
            }
        }
    }
}
