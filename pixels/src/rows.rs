//! Shrinking while decoding: rows of the source arrive one at a time (top
//! down, or bottom up as most BMPs store them) and are box-averaged into the
//! staged image at once. Only the centred square is kept; memory is one
//! accumulator row plus the staged image, whatever the source's size.

use image::metadata::Orientation;

use super::{STAGE_MIN, Staged, centre_square};

/// The pixel layouts decoders hand over, 8 bits a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    Gray,
    GrayAlpha,
    Rgb,
    Rgba,
}

/// `c` over white at opacity `a`.
#[inline]
fn over_white(c: u8, a: u8) -> u8 {
    let a = u32::from(a);
    ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8
}

/// One row of `layout` pixels as RGB8 in `dst`, alpha flattened onto white
/// (before averaging, so a transparent pixel's hidden colour cannot bleed).
/// RGB rows need no copy: the caller passes them on as they are.
pub(super) fn to_rgb(layout: Layout, src: &[u8], dst: &mut Vec<u8>) {
    dst.clear();
    // A loop a layout rather than `flat_map` into arrays (see
    // `bmp::Rows::next`).
    match layout {
        Layout::Rgb => dst.extend_from_slice(src),
        Layout::Gray => {
            for &g in src {
                dst.extend_from_slice(&[g; 3]);
            }
        }
        Layout::GrayAlpha => {
            for p in src.chunks_exact(2) {
                dst.extend_from_slice(&[over_white(p[0], p[1]); 3]);
            }
        }
        Layout::Rgba => {
            for p in src.chunks_exact(4) {
                dst.extend_from_slice(&[
                    over_white(p[0], p[3]),
                    over_white(p[1], p[3]),
                    over_white(p[2], p[3]),
                ]);
            }
        }
    }
}

pub(super) struct Shrinker {
    /// The centred square in source pixels.
    x0: usize,
    y0: u32,
    side: u32,
    /// Source pixels per staged pixel, each way.
    k: u32,
    out_side: u32,
    /// Sums of the bucket being filled, RGB per staged column.
    acc: Vec<u32>,
    bucket: Option<u32>,
    rows_in_bucket: u32,
    out: Vec<u8>,
    orientation: Orientation,
    /// The original's width and height, reported with the result.
    source: (u32, u32),
}

impl Shrinker {
    /// For a `w` x `h` source; `k` is the largest whole factor that keeps
    /// the square at least [`STAGE_MIN`] wide (1 for smaller sources).
    pub(super) fn new(w: u32, h: u32, orientation: Orientation) -> Self {
        let (x0, y0, side) = centre_square(w, h);
        let k = (side / STAGE_MIN).max(1);
        let out_side = side.div_ceil(k);
        Shrinker {
            x0: x0 as usize,
            y0,
            side,
            k,
            out_side,
            acc: vec![0; out_side as usize * 3],
            bucket: None,
            rows_in_bucket: 0,
            out: vec![0; out_side as usize * out_side as usize * 3],
            orientation,
            source: (w, h),
        }
    }

    /// Whether source row `y` lies in the square: rows outside need not be
    /// converted.
    pub(super) fn wants(&self, y: u32) -> bool {
        self.rows().contains(&y)
    }

    /// The source rows of the square.
    pub(super) fn rows(&self) -> std::ops::Range<u32> {
        self.y0..self.y0 + self.side
    }

    /// Source row `y`, full width, RGB8. Rows must come in order, either
    /// way; rows outside the square are ignored.
    pub(super) fn push(&mut self, y: u32, rgb: &[u8]) {
        if !self.wants(y) {
            return;
        }
        let bucket = (y - self.y0) / self.k;
        if self.bucket != Some(bucket) {
            self.emit();
            self.bucket = Some(bucket);
        }
        let row = &rgb[self.x0 * 3..(self.x0 + self.side as usize) * 3];
        if self.k == 1 {
            let at = bucket as usize * self.out_side as usize * 3;
            self.out[at..at + row.len()].copy_from_slice(row);
        } else {
            // A constant block width lets the compiler unroll the common
            // factors (add_blocks is inlined into each arm).
            let acc = &mut self.acc;
            match self.k {
                2 => add_blocks(2, acc, row),
                3 => add_blocks(3, acc, row),
                4 => add_blocks(4, acc, row),
                5 => add_blocks(5, acc, row),
                6 => add_blocks(6, acc, row),
                8 => add_blocks(8, acc, row),
                k => add_blocks(k as usize, acc, row),
            }
        }
        self.rows_in_bucket += 1;
    }

    /// Writes the filled bucket's averages into the staged image.
    fn emit(&mut self) {
        let Some(bucket) = self.bucket.take() else {
            return;
        };
        let rows = std::mem::take(&mut self.rows_in_bucket);
        if self.k == 1 || rows == 0 {
            return;
        }
        let k = self.k;
        let at = bucket as usize * self.out_side as usize * 3;
        let out = &mut self.out[at..at + self.out_side as usize * 3];
        for (j, (dst, sums)) in out
            .chunks_exact_mut(3)
            .zip(self.acc.chunks_exact_mut(3))
            .enumerate()
        {
            let cols = k.min(self.side - j as u32 * k);
            let n = cols * rows;
            for (d, s) in dst.iter_mut().zip(sums.iter_mut()) {
                *d = ((*s + n / 2) / n) as u8;
                *s = 0;
            }
        }
    }

    pub(super) fn finish(mut self) -> Staged {
        self.emit();
        let side = f64::from(self.out_side);
        Staged {
            rgb: self.out,
            width: self.out_side,
            height: self.out_side,
            crop: (0.0, 0.0, side),
            orientation: self.orientation,
            source: self.source,
        }
    }
}

/// Adds each block of `k` RGB pixels of `row` to its sums in `acc`; the
/// last block may be shorter.
#[inline(always)]
fn add_blocks(k: usize, acc: &mut [u32], row: &[u8]) {
    let mut blocks = row.chunks_exact(3 * k);
    for (sums, block) in acc.chunks_exact_mut(3).zip(&mut blocks) {
        let (mut r, mut g, mut b) = (0u32, 0u32, 0u32);
        for px in block.chunks_exact(3) {
            r += u32::from(px[0]);
            g += u32::from(px[1]);
            b += u32::from(px[2]);
        }
        sums[0] += r;
        sums[1] += g;
        sums[2] += b;
    }
    add_rest(acc, blocks.remainder());
}

/// The short last block, if the square's side is not a multiple of k.
fn add_rest(acc: &mut [u32], rest: &[u8]) {
    if rest.is_empty() {
        return;
    }
    let n = acc.len();
    let sums = &mut acc[n - 3..];
    for px in rest.chunks_exact(3) {
        sums[0] += u32::from(px[0]);
        sums[1] += u32::from(px[1]);
        sums[2] += u32::from(px[2]);
    }
}

/// Shrinking in any order: Adam7-interlaced PNGs deliver every pixel once,
/// pass by pass, each row a sparse sample (every `step`th pixel from
/// `start`) of a source row. Each is added to its staged pixel's sums as it
/// arrives, so memory is the sums (6 bytes a staged pixel), never the
/// image. The geometry (square, factor) is [`Shrinker`]'s, so both paths
/// stage the same picture.
pub(super) struct Scatter {
    x0: u32,
    y0: u32,
    side: u32,
    k: u32,
    out_side: u32,
    /// RGB sums per staged pixel: at most k x k x 255, which u16 holds for
    /// k <= 16 ([`Scatter::new`] refuses more).
    sums: Vec<u16>,
    orientation: Orientation,
    source: (u32, u32),
}

impl Scatter {
    /// `None` when the factor would overflow the sums (a side over 16 x
    /// [`STAGE_MIN`], past the default limits).
    pub(super) fn new(w: u32, h: u32, orientation: Orientation) -> Option<Self> {
        let (x0, y0, side) = centre_square(w, h);
        let k = (side / STAGE_MIN).max(1);
        if k > 16 {
            return None;
        }
        let out_side = side.div_ceil(k);
        Some(Scatter {
            x0,
            y0,
            side,
            k,
            out_side,
            sums: vec![0; out_side as usize * out_side as usize * 3],
            orientation,
            source: (w, h),
        })
    }

    /// Whether source row `y` lies in the square.
    pub(super) fn wants(&self, y: u32) -> bool {
        (self.y0..self.y0 + self.side).contains(&y)
    }

    /// RGB8 samples of source row `y` at columns `start`, `start + step`, ...
    pub(super) fn add(&mut self, y: u32, start: u32, step: u32, rgb: &[u8]) {
        if !self.wants(y) {
            return;
        }
        let cy = ((y - self.y0) / self.k) as usize;
        let row = cy * self.out_side as usize * 3;
        let end = self.x0 + self.side;
        // The first sample at or right of the square's left edge.
        let first = self.x0.saturating_sub(start).div_ceil(step);
        let mut x = start + first * step;
        for px in rgb.chunks_exact(3).skip(first as usize) {
            if x >= end {
                break;
            }
            let at = row + ((x - self.x0) / self.k) as usize * 3;
            for (sum, v) in self.sums[at..at + 3].iter_mut().zip(px) {
                *sum += u16::from(*v);
            }
            x += step;
        }
    }

    pub(super) fn finish(self) -> Staged {
        let (k, side, n) = (self.k, self.side, self.out_side as usize);
        let mut out = vec![0u8; n * n * 3];
        for cy in 0..n {
            let rows = k.min(side - cy as u32 * k);
            for cx in 0..n {
                let cols = k.min(side - cx as u32 * k);
                let count = rows * cols;
                let at = (cy * n + cx) * 3;
                for c in 0..3 {
                    out[at + c] = ((u32::from(self.sums[at + c]) + count / 2) / count) as u8;
                }
            }
        }
        let side = f64::from(self.out_side);
        Staged {
            rgb: out,
            width: self.out_side,
            height: self.out_side,
            crop: (0.0, 0.0, side),
            orientation: self.orientation,
            source: self.source,
        }
    }
}

/// Adam7's passes: first column, first row, column step, row step.
pub(super) const ADAM7: [(u32, u32, u32, u32); 7] = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
];

/// The rows an Adam7 PNG of `w` x `h` delivers, in order: (source row,
/// first column, column step, samples). Passes with no samples or no rows
/// are left out, as the `png` crate leaves them out.
pub(super) fn adam7_rows(w: u32, h: u32) -> impl Iterator<Item = (u32, u32, u32, u32)> {
    ADAM7.into_iter().flat_map(move |(xs, ys, dx, dy)| {
        let samples = if w > xs { (w - xs).div_ceil(dx) } else { 0 };
        let lines = if h > ys && samples > 0 {
            (h - ys).div_ceil(dy)
        } else {
            0
        };
        (0..lines).map(move |line| (ys + line * dy, xs, dx, samples))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_blocks_of_the_centred_square() {
        // 2500 wide, 2401 high: square 2401 at x 49, k 2, 1201 staged
        // pixels, the last column and row from a single source pixel.
        let (w, h) = (2500u32, 2401u32);
        let mut s = Shrinker::new(w, h, Orientation::NoTransforms);
        assert_eq!((s.k, s.out_side, s.x0), (2, 1201, 49));
        let mut row = vec![0u8; w as usize * 3];
        // Bottom up, as BMPs come.
        for y in (0..h).rev() {
            for x in 0..w as usize {
                // Pixel value: 10 on even columns, 20 on odd ones (in the
                // square's own coordinates), 100 on the square's last row.
                let in_sq = x as i64 - 49;
                let v = if y == h - 1 {
                    100
                } else if in_sq % 2 == 0 {
                    10
                } else {
                    20
                };
                row[x * 3..x * 3 + 3].copy_from_slice(&[v, v, v]);
            }
            s.push(y, &row);
        }
        let staged = s.finish();
        let px = |x: usize, y: usize| staged.rgb[(y * 1201 + x) * 3];
        assert_eq!(px(0, 0), 15); // (10+20+10+20)/4
        assert_eq!(px(1200, 0), 10); // last column: one source column
        assert_eq!(px(5, 1200), 100); // last row: one source row
    }

    #[test]
    fn every_block_width_averages_like_the_plain_loop() {
        // Sides giving k = 2..=9 (each with a short last block), checked
        // against a direct average of the source.
        for side in [2401u32, 3700, 4850, 6100, 7300, 8500, 9650, 10_900] {
            let mut s = Shrinker::new(side, side, Orientation::NoTransforms);
            let k = s.k as usize;
            assert_eq!(k, (side / STAGE_MIN) as usize);
            // One bucket row: k copies of the same source row.
            let row: Vec<u8> = (0..side as usize * 3)
                .map(|i| (i * 7 % 251) as u8)
                .collect();
            for y in 0..k as u32 {
                s.push(y, &row);
            }
            s.emit();
            let out_side = s.out_side as usize;
            for j in [0, 1, out_side / 2, out_side - 1] {
                for c in 0..3 {
                    let xs = j * k..((j + 1) * k).min(side as usize);
                    let n = xs.len() as u32;
                    let sum: u32 = xs.map(|x| u32::from(row[x * 3 + c])).sum();
                    let want = ((sum * k as u32 + n * k as u32 / 2) / (n * k as u32)) as u8;
                    assert_eq!(s.out[j * 3 + c], want, "side {side}, k {k}, column {j}");
                }
            }
        }
    }

    #[test]
    fn alpha_is_flattened_onto_white() {
        let mut out = Vec::new();
        to_rgb(
            Layout::Rgba,
            &[0, 0, 0, 0, 255, 0, 0, 255, 0, 0, 0, 128],
            &mut out,
        );
        assert_eq!(out, [255, 255, 255, 255, 0, 0, 127, 127, 127]);
        to_rgb(Layout::GrayAlpha, &[0, 0], &mut out);
        assert_eq!(out, [255, 255, 255]);
        to_rgb(Layout::Gray, &[7], &mut out);
        assert_eq!(out, [7, 7, 7]);
    }
}
