//! Peak memory of the converter (`imagegram-convert`, the Lambda's engine
//! on a file) on inputs at the contract's limits, measured on the process
//! (its own high-water mark), not timed: #22's bound is 128 MiB.
//!
//! The progressive inputs are written here, byte by byte, at 16000x12500
//! (200 MP): DC scans of all-zero differences (a one-code Huffman table),
//! a DC refinement scan, restart markers, and an AC scan of junk the
//! decoder must skip; and at 20000x4799, too narrow for the DC path, with
//! AC first and refinement scans of every component, all decoded. Small files (a few MB) that a real encoder would
//! need gigabytes to write; what they cost to convert is what a photo of
//! that size and layout costs, since the DC path reads the same blocks.
//! Arithmetic-coded progressive files (libjpeg's, held whole) at the
//! converter's ceiling for them; interlaced PNGs of each colour type and
//! BMPs of each encoding at the pixel limit or near the upload limit.

use std::path::Path;
use std::process::Command;

const LIMIT_MIB: u64 = 128;

struct Layout {
    name: &'static str,
    /// (id, h, v) of each component.
    components: &'static [(u8, u8, u8)],
    adobe: Option<u8>,
}

const LAYOUTS: &[Layout] = &[
    Layout {
        name: "4:2:0",
        components: &[(1, 2, 2), (2, 1, 1), (3, 1, 1)],
        adobe: None,
    },
    Layout {
        name: "4:4:4",
        components: &[(1, 1, 1), (2, 1, 1), (3, 1, 1)],
        adobe: None,
    },
    Layout {
        name: "CMYK",
        components: &[(1, 1, 1), (2, 1, 1), (3, 1, 1), (4, 1, 1)],
        adobe: Some(0),
    },
    Layout {
        name: "YCCK",
        components: &[(1, 1, 1), (2, 1, 1), (3, 1, 1), (4, 1, 1)],
        adobe: Some(2),
    },
];

fn segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    out.extend([0xFF, marker]);
    out.extend(((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
}

/// Bits MSB first, with JPEG's byte stuffing and restart markers.
struct Writer {
    out: Vec<u8>,
    acc: u8,
    n: u8,
}

impl Writer {
    fn bit(&mut self, b: bool) {
        self.acc = self.acc << 1 | u8::from(b);
        self.n += 1;
        if self.n == 8 {
            self.out.push(self.acc);
            if self.acc == 0xFF {
                self.out.push(0);
            }
            (self.acc, self.n) = (0, 0);
        }
    }

    /// Pads the byte with 1-bits.
    fn align(&mut self) {
        while self.n != 0 {
            self.bit(true);
        }
    }
}

/// A scan's data: the same `bits` for each of `units` MCUs, RSTn after
/// every `restart` of them.
fn scan_data(out: &mut Vec<u8>, units: usize, restart: usize, bits: &[bool]) {
    let mut w = Writer {
        out: std::mem::take(out),
        acc: 0,
        n: 0,
    };
    for u in 0..units {
        if u > 0 && u % restart == 0 {
            w.align();
            w.out.extend([0xFF, 0xD0 + ((u / restart - 1) % 8) as u8]);
        }
        for &bit in bits {
            w.bit(bit);
        }
    }
    w.align();
    *out = w.out;
}

/// A DC scan's data: one 0-bit a block (the only code: difference 0, or
/// a refinement bit of 0), RSTn after every `restart` MCUs.
fn dc_data(out: &mut Vec<u8>, mcus: usize, blocks_per_mcu: usize, restart: usize) {
    scan_data(out, mcus, restart, &vec![false; blocks_per_mcu]);
}

/// An AC scan's data for `blocks` blocks, RSTn after every `restart`: a
/// first scan gives each block coefficient 1 the value 1 (codes "10", a
/// sign bit, then "0", end of band); a refinement gives it its correction
/// bit ("0", end of band, then the bit).
fn ac_data(out: &mut Vec<u8>, blocks: usize, restart: usize, refine: bool) {
    let bits: &[bool] = if refine {
        &[false, true]
    } else {
        &[true, false, true, false]
    };
    scan_data(out, blocks, restart, bits);
}

/// What a synthetic file's AC scans are.
#[derive(Clone, Copy, PartialEq)]
enum Ac {
    /// One scan of `n` junk bytes, which the DC path skips unread.
    Junk(usize),
    /// A first scan and a refinement of every component, decoded.
    Decoded,
    /// Not progressive: sequential, a scan for each component, each block
    /// a DC difference of 0 and an end of block.
    Sequential,
}

/// The start of a file: SOI, Adobe's marker for CMYK and YCCK, one
/// quantisation table.
fn start(l: &Layout) -> Vec<u8> {
    let mut f = vec![0xFF, 0xD8];
    if let Some(t) = l.adobe {
        segment(
            &mut f,
            0xEE,
            &[b'A', b'd', b'o', b'b', b'e', 0, 100, 0, 0, 0, 0, t],
        );
    }
    let mut dqt = vec![0u8];
    dqt.extend([8u8; 64]);
    segment(&mut f, 0xDB, &dqt);
    f
}

/// The frame header (`sof` its marker) of an 8-bit `l` picture.
fn frame(f: &mut Vec<u8>, l: &Layout, width: u16, height: u16, sof: u8) {
    let mut payload = vec![8];
    payload.extend(height.to_be_bytes());
    payload.extend(width.to_be_bytes());
    payload.push(l.components.len() as u8);
    for &(id, h, v) in l.components {
        payload.extend([id, h << 4 | v, 0]);
    }
    segment(f, sof, &payload);
}

/// The header of a DC scan of every component (`ah_al`: successive
/// approximation).
fn dc_scan_header(f: &mut Vec<u8>, l: &Layout, ah_al: u8) {
    let mut sos = vec![l.components.len() as u8];
    for &(id, _, _) in l.components {
        sos.extend([id, 0x00]);
    }
    sos.extend([0, 0, ah_al]);
    segment(f, 0xDA, &sos);
}

fn synthetic(l: &Layout, width: u16, height: u16, restart: u16, ac: Ac) -> Vec<u8> {
    let mut f = start(l);
    // DC table 0: one code, "0", for difference category 0.
    let mut dht = vec![0x00, 1];
    dht.extend([0u8; 15]);
    dht.push(0);
    // AC table 0: "0" end of band, "10" run 0 size 1.
    dht.extend([0x10, 1, 1]);
    dht.extend([0u8; 14]);
    dht.extend([0x00, 0x01]);
    segment(&mut f, 0xC4, &dht);
    segment(&mut f, 0xDD, &restart.to_be_bytes());
    let sof = if ac == Ac::Sequential { 0xC0 } else { 0xC2 };
    frame(&mut f, l, width, height, sof);
    let (hmax, vmax) = l
        .components
        .iter()
        .fold((1, 1), |(a, b), &(_, h, v)| (a.max(h), b.max(v)));
    let mcus = usize::from(width).div_ceil(8 * usize::from(hmax))
        * usize::from(height).div_ceil(8 * usize::from(vmax));
    let blocks_per_mcu: usize = l
        .components
        .iter()
        .map(|&(_, h, v)| usize::from(h) * usize::from(v))
        .sum();
    let dc_scan = |f: &mut Vec<u8>, ah_al: u8| {
        dc_scan_header(f, l, ah_al);
        dc_data(f, mcus, blocks_per_mcu, usize::from(restart));
    };
    let blocks = |h: u8, v: u8| {
        let blocks_w = (usize::from(width) * usize::from(h))
            .div_ceil(usize::from(hmax))
            .div_ceil(8);
        let blocks_h = (usize::from(height) * usize::from(v))
            .div_ceil(usize::from(vmax))
            .div_ceil(8);
        blocks_w * blocks_h
    };
    if ac == Ac::Sequential {
        for &(id, h, v) in l.components {
            segment(&mut f, 0xDA, &[1, id, 0x00, 0, 63, 0]);
            // Two 0-bits a block: DC difference 0, end of block.
            dc_data(&mut f, blocks(h, v), 2, usize::from(restart));
        }
        f.extend([0xFF, 0xD9]);
        return f;
    }
    // First DC scan (Al = 1), the AC scans, the DC refinement.
    dc_scan(&mut f, 0x01);
    match ac {
        Ac::Junk(n) => {
            segment(&mut f, 0xDA, &[1, l.components[0].0, 0x00, 1, 63, 0x00]);
            f.extend(std::iter::repeat_n(0x55u8, n));
        }
        Ac::Sequential => unreachable!("written above"),
        Ac::Decoded => {
            for refine in [false, true] {
                for &(id, h, v) in l.components {
                    let ah_al = if refine { 0x10 } else { 0x01 };
                    segment(&mut f, 0xDA, &[1, id, 0x00, 1, 63, ah_al]);
                    ac_data(&mut f, blocks(h, v), usize::from(restart), refine);
                }
            }
        }
    }
    dc_scan(&mut f, 0x10);
    f.extend([0xFF, 0xD9]);
    f
}

/// An arithmetic-coded progressive file (SOF10): a DC scan of every
/// component and an AC scan (1-63) of each, with no data in them. An
/// arithmetic-coded scan may end at the next marker (the decoder then
/// reads zeros, as the standard says), so libjpeg still decodes every
/// block of every scan into the whole image's coefficients it holds, as
/// for a photo of that size.
fn arithmetic(l: &Layout, width: u16, height: u16) -> Vec<u8> {
    let mut f = start(l);
    frame(&mut f, l, width, height, 0xCA);
    dc_scan_header(&mut f, l, 0);
    for &(id, _, _) in l.components {
        segment(&mut f, 0xDA, &[1, id, 0x00, 1, 63, 0]);
    }
    f.extend([0xFF, 0xD9]);
    f
}

/// Runs the converter on `input`; its exit status and peak RSS in KiB, as
/// the converter reads it itself (its VmHWM since exec: a forked child's
/// `ru_maxrss` would count this test process's memory too).
fn convert(input: &Path, output: &Path) -> (bool, u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_imagegram-convert"))
        .arg(input)
        .arg(output)
        .env("IMAGEGRAM_REPORT_PEAK", "1")
        .output()
        .expect("imagegram-convert runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak reported: {stderr}"));
    (out.status.success(), kib)
}

/// Converts `bytes` (written to a file of its own) in a converter process,
/// prints its peak RSS and asserts the output is 600x600 and the peak
/// within the bound.
fn assert_converts_within_limit(label: &str, bytes: &[u8]) {
    let dir = scratch(label);
    let input = dir.join("in");
    std::fs::write(&input, bytes).unwrap();
    let output = dir.join("out.jpg");
    let (ok, kib) = convert(&input, &output);
    assert!(ok, "{label}: the conversion failed");
    assert_eq!(
        image::open(&output).unwrap().into_rgb8().dimensions(),
        (600, 600),
        "{label}"
    );
    println!(
        "{label} ({:.1} MB): {kib} KiB ({:.1} MiB) peak RSS",
        bytes.len() as f64 / 1e6,
        kib as f64 / 1024.0
    );
    assert!(
        kib <= LIMIT_MIB * 1024,
        "{label}: peak RSS {} MiB, over {LIMIT_MIB} MiB",
        kib / 1024
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Asserts the converter refuses `bytes` with a reason containing `why`.
fn assert_refused(label: &str, bytes: &[u8], why: &str) {
    let dir = scratch(label);
    let input = dir.join("in");
    std::fs::write(&input, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imagegram-convert"))
        .arg(&input)
        .arg(dir.join("out.jpg"))
        .output()
        .expect("imagegram-convert runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(why),
        "{label}: {stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A directory of this test process's own for `label`'s files.
fn scratch(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "imagegram-memory-{}-{}",
        std::process::id(),
        label.replace([' ', ':', ','], "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn progressive_jpegs_at_the_pixel_limit_convert_within_128_mib() {
    for l in LAYOUTS {
        // 16000x12500 = 200 MP, the limit; restarts every 37 MCUs; 8 MB of
        // AC data to skip.
        let bytes = synthetic(l, 16_000, 12_500, 37, Ac::Junk(8 << 20));
        assert_converts_within_limit(&format!("progressive {} 16000x12500", l.name), &bytes);
    }
}

#[test]
fn narrow_progressive_jpegs_at_the_side_limit_convert_within_128_mib() {
    // 20000x4799 (96 MP): the widest square short of the DC path at the
    // longest side accepted, so every scan is decoded (3/8); lying wide,
    // every row of blocks is under the square and keeps its history (the
    // worst case). Standing tall, the rows below the square are skipped.
    let mut cases: Vec<(&Layout, (u16, u16))> =
        LAYOUTS.iter().map(|l| (l, (20_000, 4_799))).collect();
    cases.push((&LAYOUTS[2], (4_799, 20_000)));
    for (l, (w, h)) in cases {
        // Restarts every 37 MCUs.
        let bytes = synthetic(l, w, h, 37, Ac::Decoded);
        assert_converts_within_limit(&format!("narrow progressive {} {w}x{h}", l.name), &bytes);
    }
}

#[test]
fn sequential_jpegs_in_several_scans_convert_within_128_mib() {
    // A scan a component, at 200 MP (libjpeg would buffer 1.2 GB of
    // coefficients for 4:4:4), and at 4799x20000 (decoded at 3/8).
    for (l, (w, h)) in [
        (&LAYOUTS[1], (16_000, 12_500)),
        (&LAYOUTS[2], (4_799, 20_000)),
    ] {
        let bytes = synthetic(l, w, h, 37, Ac::Sequential);
        assert_converts_within_limit(
            &format!("sequential {} {w}x{h}, a scan a component", l.name),
            &bytes,
        );
    }
}

#[test]
fn arithmetic_coded_progressive_jpegs_at_their_ceiling_convert_within_128_mib() {
    // libjpeg holds these whole; the converter lets it hold at most
    // 48 MiB of coefficients: 4096x4096 at 4:2:0 (1.5 samples a pixel) is
    // exactly that, 2896x2896 at 4:4:4 and 2504x2504 CMYK just under.
    for (l, side) in [
        (&LAYOUTS[0], 4096),
        (&LAYOUTS[1], 2896),
        (&LAYOUTS[2], 2504),
    ] {
        let bytes = arithmetic(l, side, side);
        assert_converts_within_limit(
            &format!("arithmetic progressive {} {side}x{side}", l.name),
            &bytes,
        );
        // One row of MCUs more is past the ceiling, refused before libjpeg
        // holds anything: these sizes are the ceiling's, not below it.
        assert_refused(
            &format!("arithmetic progressive {} {side}x{}", l.name, side + 16),
            &arithmetic(l, side, side + 16),
            "save it as an ordinary (Huffman-coded) JPEG",
        );
    }
}

#[test]
fn interlaced_pngs_at_the_pixel_limit_convert_within_128_mib() {
    use imagegram_tests::images::RawPng;
    let (w, h) = (16_000u32, 12_500u32);
    // Each file one the contract accepts (under 100 MiB), as the issue's
    // 5 MB example: a row's pixels all alike (written a row at a time,
    // fast in a debug build), a gradient down the picture. Every colour
    // type the `png` crate expands differently: RGB 8, RGB 16 (stripped
    // to 8), a palette with tRNS (expanded, alpha flattened), grey+alpha.
    let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
    let alphas: Vec<u8> = (0..=255u8).map(|i| 255 - i / 2).collect();
    let cases = [
        ("RGB 8", RawPng::rgb8(w, h), 3),
        (
            "RGB 16",
            RawPng {
                bit_depth: 16,
                ..RawPng::rgb8(w, h)
            },
            6,
        ),
        (
            "palette 8 with tRNS",
            RawPng {
                colour_type: 3,
                palette: Some((palette, Some(alphas))),
                ..RawPng::rgb8(w, h)
            },
            1,
        ),
        (
            "grey+alpha 8",
            RawPng {
                colour_type: 4,
                ..RawPng::rgb8(w, h)
            },
            2,
        ),
    ];
    for (name, raw, bytes_a_pixel) in cases {
        let png = raw.write_rows(true, |y, xs, out| {
            out.resize(out.len() + xs.len() * bytes_a_pixel, (y >> 6) as u8);
        });
        assert!(png.len() <= 100 << 20, "{name}: {} bytes", png.len());
        assert_converts_within_limit(&format!("interlaced PNG {name} {w}x{h}"), &png);
    }
}

/// A BMP with an INFO header; `extra` (bit-field masks, a palette) sits
/// between the header and `data`.
fn info_bmp(w: u32, h: u32, bits: u16, compression: u32, extra: &[u8], data: &[u8]) -> Vec<u8> {
    let offset = 54 + extra.len() as u32;
    let words: [u32; 9] = [
        offset + data.len() as u32,
        0,
        offset,
        40,
        w,
        h,
        1 | u32::from(bits) << 16,
        compression,
        0,
    ];
    let mut file = b"BM".to_vec();
    file.extend(words.iter().flat_map(|w| w.to_le_bytes()));
    file.extend([0u8; 16]);
    file.extend(extra);
    file.extend(data);
    file
}

#[test]
fn bmps_of_every_kind_at_the_limits_convert_within_128_mib() {
    // RLE8 at 200 MP (1.7 MB): runs of 255 across each row.
    // RLE4 at 200 MP too: runs of two alternating colours.
    let (w, h) = (16_000u32, 12_500u32);
    let rle = |colour: &dyn Fn(u32, u32) -> u8| {
        let mut rle = Vec::new();
        for y in 0..h {
            for run in 0..=w / 255 {
                let n = (w - run * 255).min(255) as u8;
                rle.extend([n, colour(y, run)]);
            }
            rle.extend([0, 0]);
        }
        rle.extend([0, 1]);
        rle
    };
    let rle8 = rle(&|y, run| (y / 50 + run) as u8);
    let rle4 = rle(&|y, run| (((y / 50 + run) % 16) as u8 * 17) ^ 0x0F);
    let palette = |n: u32| -> Vec<u8> {
        (0..n)
            .flat_map(|i| [(i * 255 / (n - 1)) as u8, (i * 7) as u8, (i * 13) as u8, 0])
            .collect()
    };
    // Pixel bytes: a 64 KiB (less 15) run of hashed bytes, repeated (a
    // copy at a time: a byte at a time is seconds in a debug build).
    let pattern: Vec<u8> = (0..65_521u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let filled = |len: usize| -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let n = (len - v.len()).min(pattern.len());
            v.extend_from_slice(&pattern[..n]);
        }
        v
    };
    // Uncompressed palettes and 24-bit, each near the 100 MiB upload
    // limit (rows padded to 4 bytes: none needed at these widths).
    let pixels8 = filled(10_000 * 10_000);
    let pixels4 = filled(14_000 / 2 * 14_000);
    let pixels1 = filled(16_000 / 8 * 12_500);
    let pixels24 = filled(5_900 * 3 * 5_900);
    // And 16-bit 5-6-5 bit fields and 32-bit, also just under it.
    let fields_565: Vec<u8> = [0xF800u32, 0x07E0, 0x001F]
        .iter()
        .flat_map(|m| m.to_le_bytes())
        .collect();
    let pixels16 = filled(7200 * 2 * 7200);
    let pixels32 = filled(5100 * 4 * 5100);
    let files = [
        (
            "RLE8 16000x12500",
            info_bmp(w, h, 8, 1, &palette(256), &rle8),
        ),
        (
            "RLE4 16000x12500",
            info_bmp(w, h, 4, 2, &palette(16), &rle4),
        ),
        (
            "8-bit palette 10000x10000",
            info_bmp(10_000, 10_000, 8, 0, &palette(256), &pixels8),
        ),
        (
            "4-bit palette 14000x14000",
            info_bmp(14_000, 14_000, 4, 0, &palette(16), &pixels4),
        ),
        (
            "1-bit palette 16000x12500",
            info_bmp(w, h, 1, 0, &palette(2), &pixels1),
        ),
        (
            "24-bit BI_RGB 5900x5900",
            info_bmp(5_900, 5_900, 24, 0, &[], &pixels24),
        ),
        (
            "16-bit 5-6-5 7200x7200",
            info_bmp(7200, 7200, 16, 3, &fields_565, &pixels16),
        ),
        (
            "32-bit BI_RGB 5100x5100",
            info_bmp(5100, 5100, 32, 0, &[], &pixels32),
        ),
    ];
    drop((pixels16, pixels32, pixels8, pixels4, pixels1, pixels24));
    for (name, bytes) in files {
        assert!(bytes.len() <= 100 << 20, "{name}: {} bytes", bytes.len());
        assert_converts_within_limit(&format!("BMP {name}"), &bytes);
    }
}
