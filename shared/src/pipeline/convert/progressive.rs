//! Progressive JPEGs from their DC coefficients alone.
//!
//! libjpeg keeps every DCT coefficient of a progressive image until its
//! last scan (2 bytes a sample, whatever the output scale: 1.2 GB for a
//! 200 MP 4:4:4 photo). A 600x600 result from a centred square at least
//! 4800 pixels wide needs only the 1/8-scale picture, and that is the DC
//! coefficient of each block: the block's mean, what libjpeg's own
//! `scale 1/8` computes. So for those, this module reads the markers itself,
//! decodes the DC scans (first and successive-approximation refinements)
//! into one `i16` per block, skips every AC scan by looking for the next
//! marker without Huffman-decoding it, then upsamples and colour-converts the
//! 1/8-scale planes of the centred square: memory is 2 bytes per 64 pixels
//! per component, and the time is mostly reading the file.
//!
//! Every JPEG's header goes through [`prelude`] (its bytes are kept, so the
//! libjpeg path replays them); anything it cannot read, or any frame it does
//! not take, goes to libjpeg as before.

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

/// A JPEG's header, up to and including its frame header (SOFn).
pub(super) struct Prelude {
    /// Every byte read so far, for libjpeg to read again.
    pub bytes: Vec<u8>,
    /// The frame, when the header was read to it without trouble.
    pub frame: Option<Frame>,
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

impl Frame {
    /// A progressive, Huffman-coded, 8-bit frame: what [`stage`] takes.
    pub fn is_progressive_huffman(&self) -> bool {
        self.marker == 0xC2 && self.precision == 8
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
    /// The DC quantiser of each table (its first entry).
    dc_quant: [Option<u16>; 4],
    dc_huffman: [Option<Huffman>; 4],
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
                return frame(m, &inp.segment()?);
            }
            0xD8..=0xDA => return Err(bad("no frame header before the data")),
            0xD0..=0xD7 | 0x01 => {}
            _ => {
                let data = inp.segment()?;
                table_or_marker(m, &data, &mut p.tables)?;
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
            }
        }
    }
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
                let q0 = if precision == 0 {
                    u16::from(d[i + 1])
                } else {
                    u16::from_be_bytes([d[i + 1], d[i + 2]])
                };
                t.dc_quant[id] = Some(q0);
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
                if class == 0 {
                    t.dc_huffman[id] = Some(Huffman::new(&counts, &d[i + 17..i + 17 + total])?);
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

/// One component's DC coefficients, a block each, in MCU-padded rows.
struct Plane {
    dc: Vec<i16>,
    stride: usize,
    /// Blocks wide and high of the component itself (no MCU padding).
    blocks_w: usize,
    blocks_h: usize,
    scanned: bool,
}

/// Decodes a progressive frame's DC into the 1/8-scale centred square.
pub(super) fn stage<R: BufRead>(
    mut p: Prelude,
    mut input: R,
    limits: &Limits,
) -> Result<Staged, Rejection> {
    let frame = p.frame.take().expect("stage is given a read frame");
    let (w, h) = (frame.width, frame.height);
    let (hmax, vmax) = frame
        .components
        .iter()
        .fold((1, 1), |(a, b), c| (a.max(c.h), b.max(c.v)));
    let mcus_x = (w as usize).div_ceil(8 * hmax);
    let mcus_y = (h as usize).div_ceil(8 * vmax);
    let blocks: usize = frame
        .components
        .iter()
        .map(|c| mcus_x * c.h * mcus_y * c.v)
        .sum();
    let (w8, h8) = (w.div_ceil(8) as usize, h.div_ceil(8) as usize);
    // What this path holds: a coefficient a block, and the 1/8 picture.
    check_decoded(
        NAME,
        w.into(),
        h.into(),
        (blocks * 2 + w8 * h8 * 3) as u64,
        limits,
    )?;
    let mut planes: Vec<Plane> = frame
        .components
        .iter()
        .map(|c| Plane {
            dc: vec![0; mcus_x * c.h * mcus_y * c.v],
            stride: mcus_x * c.h,
            blocks_w: (w as usize * c.h).div_ceil(hmax).div_ceil(8),
            blocks_h: (h as usize * c.v).div_ceil(vmax).div_ceil(8),
            scanned: false,
        })
        .collect();
    let mut scans = 0;
    let mut marker = {
        let mut inp = Input {
            r: &mut input,
            record: None,
        };
        inp.marker()?
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
                marker = scan(
                    &header,
                    &frame,
                    &p.tables,
                    &mut planes,
                    (mcus_x, mcus_y),
                    &mut input,
                )?;
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
    if planes.iter().any(|pl| !pl.scanned) {
        return Err(bad("a component has no DC scan"));
    }
    let quant: Vec<i32> = frame
        .components
        .iter()
        .map(|c| {
            p.tables.dc_quant[c.quant]
                .map(i32::from)
                .ok_or_else(|| bad("a quantisation table is missing"))
        })
        .collect::<Result<_, _>>()?;

    // The centred square at 1/8 scale, in whole 1/8 pixels.
    let sq = scaled_square(w, h, 1.0 / 8.0, w8, h8);
    let (c0, c1, r0, r1) = (sq.cols.start, sq.cols.end, sq.rows.start, sq.rows.end);
    let space = colour_space(&frame, &p);
    let n = frame.components.len();
    let mut rgb = Vec::with_capacity((c1 - c0) * (r1 - r0) * 3);
    let mut px = [0u8; 4];
    for y in r0..r1 {
        for x in c0..c1 {
            for (i, (c, pl)) in frame.components.iter().zip(&planes).enumerate() {
                // Chroma of a subsampled component repeats over the blocks
                // it covers (libjpeg's box upsampling at this scale).
                let (bx, by) = (
                    (x * c.h / hmax).min(pl.blocks_w - 1),
                    (y * c.v / vmax).min(pl.blocks_h - 1),
                );
                let dc = i32::from(pl.dc[by * pl.stride + bx]);
                px[i] = (((dc * quant[i] + 4) >> 3) + 128).clamp(0, 255) as u8;
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

/// Reads one scan: a DC scan is decoded into the planes, an AC scan
/// skipped. Returns the marker after it.
fn scan<R: BufRead>(
    header: &[u8],
    frame: &Frame,
    tables: &Tables,
    planes: &mut [Plane],
    (mcus_x, mcus_y): (usize, usize),
    input: &mut R,
) -> Result<u8, Rejection> {
    let ns = usize::from(*header.first().ok_or_else(|| bad("an empty scan header"))?);
    if !(1..=4).contains(&ns) || header.len() < 1 + 2 * ns + 3 {
        return Err(bad("a bad scan header"));
    }
    let mut members = Vec::with_capacity(ns);
    for i in 0..ns {
        let (id, td) = (header[1 + 2 * i], usize::from(header[2 + 2 * i] >> 4));
        let c = frame
            .components
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| bad("a scan names a component the frame lacks"))?;
        if td > 3 {
            return Err(bad("a bad scan header"));
        }
        members.push((c, td));
    }
    let (ss, se, ah, al) = (
        header[1 + 2 * ns],
        header[2 + 2 * ns],
        header[3 + 2 * ns] >> 4,
        u32::from(header[3 + 2 * ns] & 15),
    );
    if ss != 0 {
        if se < ss || se > 63 || ns != 1 {
            return Err(bad("a bad AC scan"));
        }
        return skip_entropy(input);
    }
    if se != 0 || al > 13 {
        return Err(bad("a bad DC scan"));
    }
    let first = ah == 0;
    let huffman: Vec<Option<&Huffman>> = members
        .iter()
        .map(|&(_, td)| tables.dc_huffman[td].as_ref())
        .collect();
    if first && huffman.iter().any(Option::is_none) {
        return Err(bad("a DC scan's Huffman table is missing"));
    }
    for &(c, _) in &members {
        if first {
            planes[c].scanned = true;
        } else if !planes[c].scanned {
            return Err(bad("a DC refinement before the first DC scan"));
        }
    }
    let restart = usize::from(tables.restart_interval);
    let mut bits = Bits::new(input);
    let mut pred = [0i32; 4];
    // The blocks of one MCU, in order: (member, block x, block y) offsets.
    let interleaved = ns > 1;
    let (units_x, units_y) = if interleaved {
        (mcus_x, mcus_y)
    } else {
        let pl = &planes[members[0].0];
        (pl.blocks_w, pl.blocks_h)
    };
    let mut unit = 0usize;
    for uy in 0..units_y {
        for ux in 0..units_x {
            if restart > 0 && unit > 0 && unit.is_multiple_of(restart) {
                bits.restart()?;
                pred = [0; 4];
            }
            unit += 1;
            for (m, &(c, _)) in members.iter().enumerate() {
                let comp = frame.components[c];
                let (bh, bv) = if interleaved {
                    (comp.h, comp.v)
                } else {
                    (1, 1)
                };
                let pl = &mut planes[c];
                for v in 0..bv {
                    for h in 0..bh {
                        let (bx, by) = (ux * bh + h, uy * bv + v);
                        let slot = &mut pl.dc[by * pl.stride + bx];
                        dc_block(first, huffman[m], al, &mut pred[m], slot, &mut bits)?;
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
        let v = bits.bits(u32::from(s))? as i32;
        let diff = if s > 0 && v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        };
        *pred += diff;
        *slot = i16::try_from(*pred << al).map_err(|_| bad("a DC value out of range"))?;
    } else if bits.bits(1)? == 1 {
        *slot |= 1 << al;
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
