use std::io::Cursor;

use image::{RgbImage, RgbaImage};

use super::*;

fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> image::Rgba<u8>) -> Vec<u8> {
    let img = RgbaImage::from_fn(w, h, f);
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn decode(jpeg: &[u8]) -> RgbImage {
    assert_eq!(sniff(jpeg).unwrap(), imagegram_formats::ImageFormat::Jpeg);
    image::load_from_memory(jpeg).unwrap().into_rgb8()
}

#[test]
fn sniffs_by_magic_bytes() {
    assert_eq!(
        sniff(b"\xFF\xD8\xFF\xE0rest").unwrap(),
        imagegram_formats::ImageFormat::Jpeg
    );
    assert_eq!(
        sniff(b"BM....").unwrap(),
        imagegram_formats::ImageFormat::Bmp
    );
    assert!(sniff(b"GIF89a").unwrap_err().0.contains("GIF"));
    assert!(
        sniff(b"RIFF\0\0\0\0WEBPVP8 ")
            .unwrap_err()
            .0
            .contains("WebP")
    );
    assert!(sniff(b"hello").is_err());
    assert!(sniff(b"").is_err());
}

#[test]
fn output_is_600_square_and_transparency_turns_white() {
    let out = convert(
        &png(100, 80, |_, _| image::Rgba([0, 0, 0, 0])),
        &Limits::default(),
    )
    .unwrap();
    let img = decode(&out);
    assert_eq!(img.dimensions(), (600, 600));
    let p = img.get_pixel(300, 300).0;
    assert!(p.iter().all(|c| *c > 245), "{p:?}");
}

#[test]
fn wide_images_are_cropped_not_stretched() {
    // 300x100: red | green | blue thirds. The centre square is all green.
    let src = png(300, 100, |x, _| match x {
        0..100 => image::Rgba([255, 0, 0, 255]),
        100..200 => image::Rgba([0, 255, 0, 255]),
        _ => image::Rgba([0, 0, 255, 255]),
    });
    let img = decode(&convert(&src, &Limits::default()).unwrap());
    for (x, y) in [(20, 20), (300, 300), (580, 580), (20, 580)] {
        let [r, g, b] = img.get_pixel(x, y).0;
        assert!(g > 200 && r < 60 && b < 60, "({x},{y}) = {:?}", [r, g, b]);
    }
}

#[test]
fn limits_refuse_before_decoding() {
    let small = Limits {
        max_side: 50,
        ..Limits::default()
    };
    let e = convert(&png(60, 10, |_, _| image::Rgba([1, 2, 3, 255])), &small).unwrap_err();
    assert!(e.0.contains("60x10"), "{e}");
    // The decoded-size limit binds where memory grows with the picture:
    // the progressive decoder's coefficients (here ~0.8 MB at 8/8). A
    // streamed baseline file of the same size passes it.
    let few_bytes = Limits {
        max_decoded_bytes: 200_000,
        ..Limits::default()
    };
    let img = photo_like(301, 301);
    let progressive = progressive_jpeg(Progressive::ycc((1, 1)), 301, 301, img.as_raw());
    let e = convert(&progressive, &few_bytes).unwrap_err();
    assert!(e.0.contains("would take"), "{e}");
    let baseline = mozjpeg_encode(mozjpeg::ColorSpace::JCS_RGB, 301, 301, img.as_raw());
    convert(&baseline, &few_bytes).unwrap();
    convert(&bmp(&img, 24, false), &few_bytes).unwrap();
}

#[test]
fn truncated_images_are_refused_with_a_reason() {
    let whole = png(64, 64, |x, y| image::Rgba([x as u8, y as u8, 0, 255]));
    let e = convert(&whole[..whole.len() / 2], &Limits::default()).unwrap_err();
    assert!(e.0.contains("corrupt or truncated"), "{e}");
}

// ---- The fast paths, one by one ------------------------------------------

use image::{GrayImage, ImageBuffer, Luma, Rgb};

fn encode_with(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

/// A JPEG through libjpeg itself, in any colour space it takes.
fn mozjpeg_encode(space: mozjpeg::ColorSpace, w: usize, h: usize, pixels: &[u8]) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(space);
    c.set_fastest_defaults();
    c.set_size(w, h);
    c.set_quality(95.0);
    let mut c = c.start_compress(Vec::new()).unwrap();
    c.write_scanlines(pixels).unwrap();
    c.finish().unwrap()
}

/// Smooth colour fields with fine detail: what photographs look like to a
/// resampler, and deterministic.
fn photo_like(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let detail = (((x * 7 + y * 13) % 17) as f32) * 2.0;
        Rgb([
            (fx * 200.0 + detail) as u8,
            (fy * 200.0 + detail) as u8,
            ((1.0 - fx) * 150.0 + fy * 50.0 + detail) as u8,
        ])
    })
}

/// The quality yardstick of the issue: the full-resolution image, centre
/// square, Lanczos3 straight to 600x600.
fn reference(full: &RgbImage) -> RgbImage {
    let (x, y, side) = centre_square(full.width(), full.height());
    let src = fir::images::Image::from_vec_u8(
        full.width(),
        full.height(),
        full.as_raw().clone(),
        fir::PixelType::U8x3,
    )
    .unwrap();
    let mut dst = fir::images::Image::new(SIDE, SIDE, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3))
        .crop(x.into(), y.into(), side.into(), side.into());
    fir::Resizer::new()
        .resize(&src, &mut dst, &options)
        .unwrap();
    RgbImage::from_raw(SIDE, SIDE, dst.into_vec()).unwrap()
}

fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let se: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let mse = se / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

fn assert_close(img: &RgbImage, (x, y): (u32, u32), want: [u8; 3]) {
    let got = img.get_pixel(x, y).0;
    let near = got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 12);
    assert!(near, "({x},{y}) = {got:?}, want about {want:?}");
}

#[test]
fn jpeg_scale_keeps_at_least_twice_the_target() {
    assert_eq!(jpeg::scale_for(12_000), 1); // 16000x12000: 1/8 -> 1500
    assert_eq!(jpeg::scale_for(9_000), 2); // 12000x9000: 1/4 -> 2250
    assert_eq!(jpeg::scale_for(3_000), 4); // 4000x3000: 1/2 -> 1500
    assert_eq!(jpeg::scale_for(1_500), 7);
    assert_eq!(jpeg::scale_for(800), 8);
}

#[test]
fn scaled_jpeg_decoding_matches_a_full_resolution_reference() {
    let full = photo_like(4800, 3200);
    let jpeg = mozjpeg_encode(mozjpeg::ColorSpace::JCS_RGB, 4800, 3200, full.as_raw());
    let ours = decode(&convert(&jpeg, &Limits::default()).unwrap());
    let want = reference(&image::load_from_memory(&jpeg).unwrap().into_rgb8());
    let db = psnr(&ours, &want);
    assert!(db >= 30.0, "PSNR {db:.1} dB");
}

#[test]
fn streamed_png_matches_a_full_resolution_reference() {
    let full = photo_like(3900, 2500);
    let png = encode_with(&full.clone().into(), image::ImageFormat::Png);
    let ours = decode(&convert(&png, &Limits::default()).unwrap());
    let db = psnr(&ours, &reference(&full));
    assert!(db >= 30.0, "PSNR {db:.1} dB");
}

/// A BMP file of any layout, written by hand: the DIB header of `dib`
/// bytes (12 is OS/2's core header, 40 INFO, 52 to 124 V2 to V5), `height`
/// negative for top down, bit fields as (r, g, b, a) masks, a palette of
/// `palette.len()` entries (`colours` written as the header's count), and
/// the pixel data as it lies in the file.
struct RawBmp {
    dib: u32,
    width: i32,
    height: i32,
    bits: u16,
    compression: u32,
    masks: [u32; 4],
    palette: Vec<[u8; 3]>,
    colours: u32,
    data: Vec<u8>,
}

impl RawBmp {
    fn new(dib: u32, width: i32, height: i32, bits: u16, compression: u32) -> Self {
        RawBmp {
            dib,
            width,
            height,
            bits,
            compression,
            masks: [0; 4],
            palette: Vec::new(),
            colours: 0,
            data: Vec::new(),
        }
    }

    fn file(&self) -> Vec<u8> {
        let mut dib = self.dib.to_le_bytes().to_vec();
        if self.dib == 12 {
            dib.extend((self.width as u16).to_le_bytes());
            dib.extend((self.height as u16).to_le_bytes());
            dib.extend(1u16.to_le_bytes());
            dib.extend(self.bits.to_le_bytes());
        } else {
            dib.extend(self.width.to_le_bytes());
            dib.extend(self.height.to_le_bytes());
            dib.extend(1u16.to_le_bytes());
            dib.extend(self.bits.to_le_bytes());
            dib.extend(self.compression.to_le_bytes());
            dib.extend([0; 12]); // image size, resolution
            dib.extend(self.colours.to_le_bytes());
            dib.extend([0; 4]); // important colours
            let masks = self.masks.iter().flat_map(|m| m.to_le_bytes());
            if self.dib == 40 && self.compression == 3 {
                dib.extend(masks.take(12)); // after the header
            } else {
                dib.extend(masks.take(self.dib as usize - 40));
            }
            dib.resize(dib.len().max(self.dib as usize), 0);
        }
        let entry = if self.dib == 12 { 3 } else { 4 };
        for [r, g, b] in &self.palette {
            dib.extend(&[*b, *g, *r, 0][..entry]);
        }
        let offset = 14 + dib.len();
        let mut out = b"BM".to_vec();
        out.extend(((offset + self.data.len()) as u32).to_le_bytes());
        out.extend([0; 4]);
        out.extend((offset as u32).to_le_bytes());
        out.extend(dib);
        out.extend(&self.data);
        out
    }

    /// Uncompressed rows, in file order: `value(row, x)` packed at
    /// `bits` a pixel (most significant first below 8, little-endian
    /// above), each row padded to 4 bytes.
    fn pack(mut self, value: impl Fn(u32, u32) -> u32) -> Self {
        let (w, h) = (self.width as u32, self.height.unsigned_abs());
        let bits = self.bits as usize;
        for row in 0..h {
            let mut line = vec![0u8; (w as usize * bits).div_ceil(32) * 4];
            for x in 0..w {
                let v = value(row, x);
                let v = if bits < 8 { v & ((1 << bits) - 1) } else { v };
                let at = x as usize * bits;
                match bits {
                    1 | 2 | 4 | 8 => line[at / 8] |= (v as u8) << (8 - bits - at % 8),
                    _ => line[at / 8..at / 8 + bits / 8]
                        .copy_from_slice(&v.to_le_bytes()[..bits / 8]),
                }
            }
            self.data.extend(line);
        }
        self
    }
}

/// A BMP written by hand, so every layout can be had: `bits` 8 (grey
/// palette), 24 or 32, bottom up or top down.
fn bmp(img: &RgbImage, bits: u16, top_down: bool) -> Vec<u8> {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let mut raw = RawBmp::new(40, w, if top_down { -h } else { h }, bits, 0);
    if bits == 8 {
        raw.palette = (0..=255u8).map(|g| [g, g, g]).collect();
    }
    raw.pack(|row, x| {
        let y = if top_down { row } else { h as u32 - 1 - row };
        let [r, g, b] = img.get_pixel(x, y).0;
        match bits {
            8 => u32::from(r),
            _ => u32::from_le_bytes([b, g, r, 0]),
        }
    })
    .file()
}

#[test]
fn bmp_layouts_stream_to_the_right_pixels() {
    // Red | grey | blue thirds, 2700x2500: streamed with k = 2.
    let img = RgbImage::from_fn(2700, 2500, |x, _| match x {
        0..900 => Rgb([200, 0, 0]),
        900..1800 => Rgb([128, 128, 128]),
        _ => Rgb([0, 0, 200]),
    });
    for (bits, top_down) in [(24, false), (24, true), (32, false)] {
        let out = decode(&convert(&bmp(&img, bits, top_down), &Limits::default()).unwrap());
        // The square is x 100..2600: 800 red, 900 grey, 800 blue.
        assert_close(&out, (20, 300), [200, 0, 0]);
        assert_close(&out, (300, 300), [128, 128, 128]);
        assert_close(&out, (580, 300), [0, 0, 200]);
    }
    let grey = RgbImage::from_fn(300, 200, |x, _| {
        let g = if x < 150 { 40 } else { 220 };
        Rgb([g, g, g])
    });
    let out = decode(&convert(&bmp(&grey, 8, false), &Limits::default()).unwrap());
    assert_close(&out, (10, 300), [40, 40, 40]);
    assert_close(&out, (590, 300), [220, 220, 220]);
    // The image crate's own BMP (24-bit, bottom up) too.
    let out = decode(
        &convert(
            &encode_with(&img.into(), image::ImageFormat::Bmp),
            &Limits::default(),
        )
        .unwrap(),
    );
    assert_close(&out, (20, 300), [200, 0, 0]);
}

/// What the `image` crate makes of a BMP, staged as ours is: the
/// reference every streamed layout is held to.
fn staged_by_the_image_crate(file: &[u8]) -> Result<Staged, image::ImageError> {
    let image = image::load_from_memory_with_format(file, image::ImageFormat::Bmp)?;
    let (w, h) = (image.width(), image.height());
    let mut shrinker = super::rows::Shrinker::new(w, h, Orientation::NoTransforms);
    let mut rgb = Vec::new();
    let rgba = image.into_rgba8();
    for (y, row) in rgba.chunks_exact(w as usize * 4).enumerate() {
        super::rows::to_rgb(super::rows::Layout::Rgba, row, &mut rgb);
        shrinker.push(y as u32, &rgb);
    }
    Ok(shrinker.finish())
}

fn assert_same_as_the_image_crate(name: &str, file: &[u8]) {
    let ours =
        bmp::stage(Cursor::new(file), &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let theirs = staged_by_the_image_crate(file).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        (ours.width, ours.height, ours.crop, ours.source),
        (theirs.width, theirs.height, theirs.crop, theirs.source),
        "{name}"
    );
    if let Some(i) = (0..ours.rgb.len()).find(|&i| ours.rgb[i] != theirs.rgb[i]) {
        panic!(
            "{name}: staged byte {i} (pixel {}) is {}, the image crate's {}",
            i / 3,
            ours.rgb[i],
            theirs.rgb[i]
        );
    }
}

/// Pseudo-random, repeatable.
fn noise(seed: u32) -> impl FnMut() -> u32 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    }
}

fn random_palette(n: usize, seed: u32) -> Vec<[u8; 3]> {
    let mut next = noise(seed);
    (0..n)
        .map(|_| {
            let v = next().to_le_bytes();
            [v[0], v[1], v[2]]
        })
        .collect()
}

#[test]
fn every_uncompressed_bmp_layout_streams_to_the_image_crates_pixels() {
    let (w, h) = (53, 37);
    let hash = |row: u32, x: u32| {
        (row.wrapping_mul(2_654_435_761) ^ x.wrapping_mul(40_503)).rotate_left(x % 31)
    };
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // Palettes of every depth, core and INFO headers, bottom up and top
    // down, a short palette (indices past it are black).
    for (dib, bits) in [
        (12, 1),
        (12, 4),
        (12, 8),
        (40, 1),
        (40, 2),
        (40, 4),
        (40, 8),
        (124, 8),
    ] {
        for height in [h, -h] {
            if dib == 12 && height < 0 {
                continue;
            }
            let mut raw = RawBmp::new(dib, w, height, bits, 0);
            raw.palette = random_palette(1 << bits, u32::from(bits) * 7 + dib);
            cases.push((
                format!("{bits}-bit palette, header {dib}, height {height}"),
                raw.pack(hash).file(),
            ));
        }
    }
    let mut raw = RawBmp::new(40, w, h, 8, 0);
    raw.palette = random_palette(20, 3);
    raw.colours = 20;
    cases.push(("8-bit, 20 colours".into(), raw.pack(hash).file()));
    // 16-bit 5-5-5, 24- and 32-bit BI_RGB (the fourth byte is not alpha).
    for (dib, bits, height) in [
        (40, 16, h),
        (40, 16, -h),
        (12, 24, h),
        (40, 24, -h),
        (40, 32, h),
        (124, 32, -h),
    ] {
        cases.push((
            format!("BI_RGB {bits}-bit, header {dib}, height {height}"),
            RawBmp::new(dib, w, height, bits, 0).pack(hash).file(),
        ));
    }
    // Bit fields: 5-6-5, every field width from 1 to 10 bits (wider ones
    // keep their top 8), alpha from V3 headers on.
    let fields: [(u32, u16, [u32; 4]); 7] = [
        (40, 16, [0xF800, 0x07E0, 0x001F, 0]),
        (52, 16, [0x7C00, 0x03E0, 0x001F, 0]),
        (56, 16, [0x0F00, 0x00F0, 0x000F, 0xF000]),
        (108, 32, [0x3FF0_0000, 0x000F_FC00, 0x0000_03FF, 0]),
        (
            124,
            32,
            [0x00FF_0000, 0x0000_FF00, 0x0000_00FF, 0xFF00_0000],
        ),
        (40, 32, [0b111, 0b1111 << 3, 0b11_1111 << 7, 0]),
        (56, 32, [0b1, 0b11 << 1, 0b111_1111 << 3, 0b1_1111 << 10]),
    ];
    for (dib, bits, masks) in fields {
        for height in [h, -h] {
            let mut raw = RawBmp::new(dib, w, height, bits, 3);
            raw.masks = masks;
            cases.push((
                format!("bit fields {masks:x?}, header {dib}, height {height}"),
                raw.pack(hash).file(),
            ));
        }
    }
    for (name, file) in &cases {
        assert_same_as_the_image_crate(name, file);
    }
    // Big enough to be shrunk (k = 2) and stopped after the square.
    let mut raw = RawBmp::new(124, 2600, 2500, 32, 3);
    raw.masks = [0x00FF_0000, 0x0000_FF00, 0x0000_00FF, 0xFF00_0000];
    assert_same_as_the_image_crate("2600x2500 with alpha", &raw.pack(hash).file());
}

/// RLE ops, in file order.
fn rle(ops: &[&[u8]]) -> Vec<u8> {
    ops.concat()
}

#[test]
fn rle_bmps_stream_to_the_image_crates_pixels_deltas_and_all() {
    // RLE8, 13x9: runs, an odd absolute run (padded), a delta along the
    // row, a run past the row's end (cut), a delta down two rows, an
    // absolute row, indices past the palette, end of bitmap early.
    let mut raw = RawBmp::new(40, 13, 9, 8, 1);
    raw.palette = random_palette(200, 11);
    raw.colours = 200;
    raw.data = rle(&[
        &[5, 1, 0, 3, 2, 3, 4, 0, 0, 2, 2, 0, 3, 7, 0, 0],
        &[20, 9, 0, 0],
        &[4, 2, 0, 2, 3, 2, 6, 5, 0, 0],
        &[0, 13, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0, 0, 0],
        &[2, 255, 0, 1],
    ]);
    assert_same_as_the_image_crate("RLE8", &raw.file());
    // RLE4, 11x6: nibble pairs, an odd absolute run, deltas, EOF.
    let mut raw = RawBmp::new(40, 11, 6, 4, 2);
    raw.palette = random_palette(16, 12);
    raw.data = rle(&[
        &[5, 0x12, 0, 5, 0x34, 0x56, 0x70, 0, 0, 2, 1, 0, 0, 0],
        &[11, 0xAB, 0, 0],
        &[3, 0xCD, 0, 2, 4, 2, 4, 0xEF, 0, 0],
        &[0, 1],
    ]);
    assert_same_as_the_image_crate("RLE4", &raw.file());
    // RLE8 at 2600x2500 (shrunk, k = 2): ten runs of 255 and one of 50 a row.
    let mut raw = RawBmp::new(40, 2600, 2500, 8, 1);
    raw.palette = random_palette(256, 13);
    for row in 0..2500u32 {
        for run in 0..11u32 {
            let n = if run < 10 { 255 } else { 50 };
            raw.data.extend([n, ((row / 7 + run * 23) % 256) as u8]);
        }
        raw.data.extend([0, 0]);
    }
    assert_same_as_the_image_crate("RLE8 2600x2500", &raw.file());
}

#[test]
fn broken_and_unsupported_bmps_are_refused_as_the_image_crate_refuses_them() {
    let rle8 = |data: &[&[u8]]| {
        let mut raw = RawBmp::new(40, 4, 3, 8, 1);
        raw.palette = random_palette(4, 1);
        raw.colours = 4;
        raw.data = rle(data);
        raw.file()
    };
    let mut masks = RawBmp::new(40, 4, 3, 32, 3);
    masks.masks = [0xF0F0, 0x0F00_0000, 0xFF, 0];
    let mut no_green = RawBmp::new(40, 4, 3, 16, 3);
    no_green.masks = [0xF800, 0, 0x1F, 0];
    let mut big_palette = RawBmp::new(40, 4, 3, 4, 0);
    big_palette.colours = 17;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a delta below the image",
            rle8(&[&[0, 2, 0, 3]]),
            "moves past the image",
        ),
        (
            "a delta along past the row",
            rle8(&[&[2, 1, 0, 2, 3, 0]]),
            "moves past the row",
        ),
        (
            "an absolute run past the row",
            rle8(&[&[0, 5, 1, 2, 3, 1, 2, 0]]),
            "runs past the row",
        ),
        (
            "RLE data cut short",
            rle8(&[&[4, 1, 0, 0, 4]]),
            "corrupt or truncated",
        ),
        (
            "a top-down RLE8",
            {
                let mut r = RawBmp::new(40, 4, -3, 8, 1);
                r.data = rle(&[&[0, 1]]);
                r.file()
            },
            "top-down",
        ),
        (
            "JPEG inside",
            RawBmp::new(40, 4, 3, 24, 4).file(),
            "JPEG-compressed",
        ),
        (
            "PNG inside",
            RawBmp::new(40, 4, 3, 24, 5).file(),
            "PNG-compressed",
        ),
        (
            "compression 6",
            RawBmp::new(40, 4, 3, 32, 6).file(),
            "unknown compression 6",
        ),
        (
            "RLE8 at 4 bits",
            RawBmp::new(40, 4, 3, 4, 1).file(),
            "4 bits a pixel",
        ),
        (
            "BI_RGB at 7 bits",
            RawBmp::new(40, 4, 3, 7, 0).file(),
            "7 bits a pixel",
        ),
        (
            "header of 64 bytes",
            RawBmp::new(64, 4, 3, 24, 0).file(),
            "header size 64",
        ),
        (
            "a non-contiguous mask",
            masks.pack(|_, _| 0).file(),
            "not contiguous",
        ),
        (
            "no green bits",
            no_green.pack(|_, _| 0).file(),
            "bit field is empty",
        ),
        (
            "17 colours for 4 bits",
            big_palette.pack(|_, _| 0).file(),
            "17 palette entries",
        ),
    ];
    for (name, file, why) in cases {
        let e = convert(&file, &Limits::default()).expect_err(name);
        assert!(e.0.contains(why), "{name}: {e}");
        assert!(
            staged_by_the_image_crate(&file).is_err(),
            "{name}: the image crate reads it"
        );
    }
}

#[test]
fn tiny_images_are_scaled_up_in_every_format() {
    let one = RgbImage::from_pixel(1, 1, Rgb([10, 200, 30]));
    let files = [
        encode_with(&one.clone().into(), image::ImageFormat::Png),
        mozjpeg_encode(mozjpeg::ColorSpace::JCS_RGB, 1, 1, one.as_raw()),
        bmp(&one, 24, false),
        bmp(&one, 32, true),
    ];
    for file in files {
        let out = decode(&convert(&file, &Limits::default()).unwrap());
        assert_eq!(out.dimensions(), (600, 600));
        assert_close(&out, (300, 300), [10, 200, 30]);
    }
}

#[test]
fn grayscale_images_convert() {
    let g = GrayImage::from_fn(700, 500, |x, _| Luma([if x < 350 { 30 } else { 230 }]));
    let files = [
        encode_with(&g.clone().into(), image::ImageFormat::Png),
        mozjpeg_encode(mozjpeg::ColorSpace::JCS_GRAYSCALE, 700, 500, g.as_raw()),
        // Grey with alpha: transparent on the right, so white there.
        encode_with(
            &ImageBuffer::<image::LumaA<u8>, _>::from_fn(700, 500, |x, _| {
                image::LumaA([30, if x < 350 { 255 } else { 0 }])
            })
            .into(),
            image::ImageFormat::Png,
        ),
    ];
    for file in files {
        let out = decode(&convert(&file, &Limits::default()).unwrap());
        assert_close(&out, (20, 300), [30, 30, 30]);
        let right = out.get_pixel(580, 300).0;
        assert!(right.iter().all(|c| *c >= 220), "{right:?}");
    }
}

#[test]
fn cmyk_jpegs_convert_to_rgb() {
    // Adobe convention (libjpeg writes the Adobe marker for CMYK): stored
    // values are inverted, 255 = no ink. Left: magenta + yellow ink (red),
    // right: no ink (white).
    let (w, h) = (400usize, 300usize);
    let pixels: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            if i % w < w / 2 {
                [255, 0, 0, 255]
            } else {
                [255, 255, 255, 255]
            }
        })
        .collect();
    let jpeg = mozjpeg_encode(mozjpeg::ColorSpace::JCS_CMYK, w, h, &pixels);
    let out = decode(&convert(&jpeg, &Limits::default()).unwrap());
    assert_close(&out, (20, 300), [255, 0, 0]);
    assert_close(&out, (580, 300), [255, 255, 255]);
}

#[test]
fn sixteen_bit_pngs_convert() {
    let img = ImageBuffer::<Rgb<u16>, _>::from_fn(640, 480, |x, _| {
        if x < 320 {
            Rgb([65535, 0, 0])
        } else {
            Rgb([0, 0, 32768])
        }
    });
    let out = decode(
        &convert(
            &encode_with(&img.into(), image::ImageFormat::Png),
            &Limits::default(),
        )
        .unwrap(),
    );
    assert_close(&out, (20, 300), [255, 0, 0]);
    assert_close(&out, (580, 300), [0, 0, 128]);
}

#[test]
fn palette_pngs_with_transparency_turn_white_where_transparent() {
    let (w, h) = (300u32, 200u32);
    let mut file = Vec::new();
    {
        let mut enc = ::png::Encoder::new(&mut file, w, h);
        enc.set_color(::png::ColorType::Indexed);
        enc.set_depth(::png::BitDepth::Eight);
        enc.set_palette(vec![0, 0, 0, 0, 0, 255]); // 0: black, 1: blue
        enc.set_trns(vec![0]); // 0 fully transparent, 1 opaque
        let mut writer = enc.write_header().unwrap();
        let data: Vec<u8> = (0..w * h).map(|i| u8::from(i % w >= w / 2)).collect();
        writer.write_image_data(&data).unwrap();
    }
    let out = decode(&convert(&file, &Limits::default()).unwrap());
    assert_close(&out, (20, 300), [255, 255, 255]);
    assert_close(&out, (580, 300), [0, 0, 255]);
}

#[test]
fn exif_orientation_is_applied_after_the_resize() {
    // Top half red, bottom half blue; orientation 6 turns it 90 degrees
    // clockwise: red on the right.
    let img = RgbImage::from_fn(2000, 1500, |_, y| {
        if y < 750 {
            Rgb([220, 0, 0])
        } else {
            Rgb([0, 0, 220])
        }
    });
    let plain = mozjpeg_encode(mozjpeg::ColorSpace::JCS_RGB, 2000, 1500, img.as_raw());
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
    let mut app1 = b"Exif\0\0".to_vec();
    app1.append(&mut tiff);
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
    jpeg.extend(((app1.len() + 2) as u16).to_be_bytes());
    jpeg.extend(app1);
    jpeg.extend(&plain[2..]);
    let out = decode(&convert(&jpeg, &Limits::default()).unwrap());
    assert_close(&out, (20, 300), [0, 0, 220]);
    assert_close(&out, (580, 300), [220, 0, 0]);
}

#[test]
fn broken_jpegs_and_bmps_are_refused_with_a_reason() {
    let img = photo_like(800, 600);
    let jpeg = mozjpeg_encode(mozjpeg::ColorSpace::JCS_RGB, 800, 600, img.as_raw());
    let e = convert(&jpeg[..jpeg.len() / 2], &Limits::default()).unwrap_err();
    assert!(e.0.contains("JPEG image is corrupt or truncated"), "{e}");
    assert!(e.0.contains("libjpeg"), "{e}");
    // Only a start-of-image marker and garbage.
    let e = convert(b"\xFF\xD8\xFF\x00garbage", &Limits::default()).unwrap_err();
    assert!(e.0.contains("JPEG image is corrupt"), "{e}");
    let small = Limits {
        max_side: 500,
        ..Limits::default()
    };
    assert!(convert(&jpeg, &small).unwrap_err().0.contains("800x600"));

    let file = bmp(&img, 24, false);
    let e = convert(&file[..file.len() / 2], &Limits::default()).unwrap_err();
    assert!(e.0.contains("BMP image is corrupt or truncated"), "{e}");
    let e = convert(&file[..20], &Limits::default()).unwrap_err();
    assert!(e.0.contains("BMP image is corrupt"), "{e}");
    // A header claiming 50000 x 50000 is refused before anything is read.
    let mut huge = file[..54].to_vec();
    huge[18..22].copy_from_slice(&50_000i32.to_le_bytes());
    huge[22..26].copy_from_slice(&50_000i32.to_le_bytes());
    assert!(
        convert(&huge, &Limits::default())
            .unwrap_err()
            .0
            .contains("50000x50000")
    );
}

#[test]
fn mutated_files_end_in_a_result_never_a_crash() {
    // Hostile input at scale: valid files of each path with a few random
    // bytes overwritten (headers, tables, entropy-coded data alike). Each
    // must come back as a 600x600 JPEG or a reason; a libjpeg error that
    // escaped its catch_unwind, or any other panic, fails the test.
    let img = photo_like(320, 240);
    let originals = [
        mozjpeg_encode(mozjpeg::ColorSpace::JCS_RGB, 320, 240, img.as_raw()),
        encode_with(&img.clone().into(), image::ImageFormat::Png),
        bmp(&img, 24, false),
        bmp(&img, 8, true),
    ];
    // Small limits keep a mutated header from asking for much.
    let limits = Limits {
        max_side: 4096,
        max_pixels: 4_000_000,
        max_decoded_bytes: 64 << 20,
    };
    let mut state = 0x1234_5678u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let (mut converted, mut refused) = (0, 0);
    for original in &originals {
        for _ in 0..50 {
            let mut file = original.clone();
            for _ in 0..1 + next() % 8 {
                // Past the magic bytes, so every case reaches a decoder.
                let at = 4 + next() as usize % (file.len() - 4);
                file[at] = next() as u8;
            }
            match convert(&file, &limits) {
                Ok(jpeg) => {
                    assert_eq!(decode(&jpeg).dimensions(), (SIDE, SIDE));
                    converted += 1;
                }
                Err(reason) => {
                    assert!(!reason.0.is_empty());
                    refused += 1;
                }
            }
        }
    }
    // Both outcomes occur: the mutations reach headers and pixels alike.
    println!("{converted} converted, {refused} refused");
    assert!(
        converted > 0 && refused > 0,
        "{converted} converted, {refused} refused"
    );
}

#[test]
fn output_is_a_baseline_4_2_0_jpeg_with_only_a_jfif_header() {
    let out = convert(&bmp(&photo_like(900, 700), 24, false), &Limits::default()).unwrap();
    // Baseline (SOF0), never progressive (SOF2).
    let sof = out
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame header");
    assert!(!out.windows(2).any(|w| w == [0xFF, 0xC2]));
    let frame = &out[sof + 2..];
    assert_eq!(u16::from_be_bytes([frame[3], frame[4]]), 600); // height
    assert_eq!(u16::from_be_bytes([frame[5], frame[6]]), 600); // width
    assert_eq!(frame[7], 3, "three components");
    // Sampling factors: luma 2x2, chroma 1x1, i.e. 4:2:0.
    assert_eq!([frame[9], frame[12], frame[15]], [0x22, 0x11, 0x11]);
    // The only application marker is JFIF's APP0: no EXIF, ICC or XMP.
    let apps: Vec<u8> = out
        .windows(2)
        .take(sof)
        .filter(|w| w[0] == 0xFF && (0xE0..=0xEF).contains(&w[1]))
        .map(|w| w[1])
        .collect();
    assert_eq!(apps, [0xE0]);
}

/// How a progressive test JPEG is made.
#[derive(Clone, Copy, Debug)]
struct Progressive {
    space: mozjpeg::ColorSpace,
    /// Stored as YCCK (4 components) or grey (1), else libjpeg's default.
    store: Option<mozjpeg::ColorSpace>,
    /// (h, v) of the first component (others 1x1).
    sampling: (i32, i32),
    /// MCUs per restart interval, 0 for none.
    restart: u32,
    /// libjpeg-turbo's simple progression (DC successive approximation)
    /// rather than mozjpeg's optimised scans.
    turbo: bool,
    /// Not progressive: sequential, a scan for each component (which
    /// libjpeg, too, buffers whole).
    separate: bool,
}

impl Progressive {
    fn ycc(sampling: (i32, i32)) -> Self {
        Progressive {
            space: mozjpeg::ColorSpace::JCS_RGB,
            store: None,
            sampling,
            restart: 0,
            turbo: true,
            separate: false,
        }
    }
}

/// A progressive JPEG through libjpeg's own C API (the crate's encoder
/// sets neither restart intervals nor sampling of every kind).
fn progressive_jpeg(p: Progressive, w: u32, h: u32, pixels: &[u8]) -> Vec<u8> {
    use mozjpeg::ColorSpaceExt;
    use mozjpeg_sys::*;
    // SAFETY: the libjpeg compression sequence, single-threaded; the output
    // buffer is libjpeg's (malloc) and freed after it is copied.
    unsafe {
        let mut err: jpeg_error_mgr = std::mem::zeroed();
        let mut c: jpeg_compress_struct = std::mem::zeroed();
        c.common.err = jpeg_std_error(&mut err);
        jpeg_create_compress(&mut c);
        let mut out: *mut u8 = std::ptr::null_mut();
        let mut size: std::os::raw::c_ulong = 0;
        jpeg_mem_dest(&mut c, &mut out, &mut size);
        c.image_width = w;
        c.image_height = h;
        c.in_color_space = p.space;
        c.input_components = p.space.num_components() as i32;
        if p.turbo {
            jpeg_c_set_int_param(
                &mut c,
                J_INT_PARAM::JINT_COMPRESS_PROFILE,
                JCP_FASTEST as i32,
            );
        }
        jpeg_set_defaults(&mut c);
        if let Some(s) = p.store {
            jpeg_set_colorspace(&mut c, s);
        }
        // Coarse DC steps (27 for luma), so a lost refinement bit shows.
        jpeg_set_quality(&mut c, 30, 1);
        let comps = std::slice::from_raw_parts_mut(c.comp_info, c.num_components as usize);
        for (i, comp) in comps.iter_mut().enumerate() {
            (comp.h_samp_factor, comp.v_samp_factor) = if i == 0 { p.sampling } else { (1, 1) };
        }
        c.restart_interval = p.restart;
        let scans: Vec<jpeg_scan_info> = (0..c.num_components)
            .map(|i| jpeg_scan_info {
                comps_in_scan: 1,
                component_index: [i, 0, 0, 0],
                Ss: 0,
                Se: 63,
                Ah: 0,
                Al: 0,
            })
            .collect();
        if p.separate {
            c.num_scans = scans.len() as i32;
            c.scan_info = scans.as_ptr();
        } else {
            jpeg_simple_progression(&mut c);
        }
        jpeg_start_compress(&mut c, 1);
        let stride = (w as usize) * c.input_components as usize;
        for row in pixels.chunks_exact(stride) {
            let rows = [row.as_ptr()];
            jpeg_write_scanlines(&mut c, rows.as_ptr(), 1);
        }
        jpeg_finish_compress(&mut c);
        let bytes = std::slice::from_raw_parts(out, size as usize).to_vec();
        jpeg_destroy_compress(&mut c);
        libc_free(out.cast());
        bytes
    }
}

unsafe extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut std::ffi::c_void);
}

/// libjpeg's own M/8-scale picture (box upsampling, as ours), as RGB.
fn libjpeg_scaled(jpeg: &[u8], m: u8) -> RgbImage {
    let mut d = mozjpeg::Decompress::new_mem(jpeg).unwrap();
    d.scale(m);
    d.do_fancy_upsampling(false);
    let cmyk = matches!(
        d.color_space(),
        mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK
    );
    let adobe = jpeg.windows(5).any(|w| w == b"Adobe");
    let mut started = if cmyk {
        d.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK).unwrap()
    } else {
        d.rgb().unwrap()
    };
    let (w, h) = (started.width() as u32, started.height() as u32);
    let raw: Vec<u8> = started.read_scanlines().unwrap();
    let rgb = if cmyk {
        let mut out = Vec::new();
        jpeg::cmyk_to_rgb(&raw, adobe, &mut out);
        out
    } else {
        raw
    };
    RgbImage::from_raw(w, h, rgb).unwrap()
}

/// Our M/8 picture of a square progressive JPEG (its centred square is
/// all of it).
fn staged_at(jpeg: &[u8], m: usize) -> Result<RgbImage, Rejection> {
    let mut input = jpeg;
    let prelude = progressive::prelude(&mut input);
    assert!(prelude.is_ours(), "not a JPEG for our decoder");
    let staged = progressive::stage_at(prelude, input, &Limits::default(), m)?;
    Ok(RgbImage::from_raw(staged.width, staged.height, staged.rgb).unwrap())
}

/// Progressive test files of every layout and scan script, 301x301.
fn progressive_cases() -> Vec<(&'static str, Progressive, Vec<u8>)> {
    let (w, h) = (301u32, 301u32);
    let rgb = photo_like(w, h);
    let cmyk: Vec<u8> = rgb
        .pixels()
        .flat_map(|p| [p[0], p[1], p[2], 255 - p[0] / 2])
        .collect();
    let grey: Vec<u8> = rgb.pixels().map(|p| p[1]).collect();
    let cases: Vec<(&str, Progressive, &[u8])> = vec![
        ("4:2:0", Progressive::ycc((2, 2)), rgb.as_raw()),
        ("4:4:4", Progressive::ycc((1, 1)), rgb.as_raw()),
        ("4:2:2", Progressive::ycc((2, 1)), rgb.as_raw()),
        ("4:4:0", Progressive::ycc((1, 2)), rgb.as_raw()),
        (
            "4:2:0 mozjpeg scans",
            Progressive {
                turbo: false,
                ..Progressive::ycc((2, 2))
            },
            rgb.as_raw(),
        ),
        (
            "4:2:0 restart every MCU",
            Progressive {
                restart: 1,
                ..Progressive::ycc((2, 2))
            },
            rgb.as_raw(),
        ),
        (
            "4:4:4 restart every 7",
            Progressive {
                restart: 7,
                ..Progressive::ycc((1, 1))
            },
            rgb.as_raw(),
        ),
        (
            "grey",
            Progressive {
                space: mozjpeg::ColorSpace::JCS_GRAYSCALE,
                sampling: (1, 1),
                ..Progressive::ycc((1, 1))
            },
            &grey,
        ),
        (
            "CMYK",
            Progressive {
                space: mozjpeg::ColorSpace::JCS_CMYK,
                sampling: (1, 1),
                ..Progressive::ycc((1, 1))
            },
            &cmyk,
        ),
        (
            "4:2:0 sequential, a scan a component",
            Progressive {
                separate: true,
                restart: 3,
                ..Progressive::ycc((2, 2))
            },
            rgb.as_raw(),
        ),
        (
            "CMYK sequential, a scan a component",
            Progressive {
                space: mozjpeg::ColorSpace::JCS_CMYK,
                sampling: (1, 1),
                separate: true,
                ..Progressive::ycc((1, 1))
            },
            &cmyk,
        ),
        (
            "YCCK 4:2:0",
            Progressive {
                space: mozjpeg::ColorSpace::JCS_CMYK,
                store: Some(mozjpeg::ColorSpace::JCS_YCCK),
                ..Progressive::ycc((2, 2))
            },
            &cmyk,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, p, pixels)| (name, p, progressive_jpeg(p, w, h, pixels)))
        .collect()
}

#[test]
fn progressive_dc_decoding_matches_libjpegs_own_eighth_scale() {
    for (name, p, jpeg) in progressive_cases() {
        let ours = staged_at(&jpeg, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
        let theirs = libjpeg_scaled(&jpeg, 1);
        assert_eq!(ours.dimensions(), theirs.dimensions(), "{name}");
        let worst = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        if p.sampling == (1, 1) {
            // The same numbers: each block's mean, colour-converted.
            assert!(worst <= 2, "{name}: a sample differs by {worst}");
        } else {
            // libjpeg scales subsampled chroma up by a 2x2 IDCT (its AC
            // terms); from DC alone it repeats over the blocks it covers.
            let db = psnr(&ours, &theirs);
            assert!(
                db >= 40.0 && worst <= 24,
                "{name}: PSNR {db:.1} dB, worst {worst}"
            );
        }
    }
}

#[test]
fn progressive_scaled_decoding_matches_libjpegs_own_scales() {
    for (name, _, jpeg) in progressive_cases() {
        for m in 2..=8u8 {
            let ours = staged_at(&jpeg, usize::from(m)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let theirs = libjpeg_scaled(&jpeg, m);
            assert_eq!(ours.dimensions(), theirs.dimensions(), "{name} at {m}/8");
            let worst = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            let db = psnr(&ours, &theirs);
            // The same coefficients through an M-point inverse DCT, float
            // here and integer in libjpeg: a rounding apart. At 2/8 and
            // 4/8 libjpeg-turbo uses older reduced transforms (jidctred.c:
            // an 8-point one decimated, reading coefficients past the M x M
            // corner): a few levels apart.
            let (most, least) = if m == 2 || m == 4 {
                (5, 48.0)
            } else {
                (1, 65.0)
            };
            assert!(
                worst <= most && db >= least,
                "{name} at {m}/8: worst {worst}, PSNR {db:.1} dB"
            );
        }
    }
}

#[test]
fn tall_and_wide_progressive_jpegs_decode_their_square_as_libjpeg_does() {
    // Only the blocks under the centred square are kept, and each scan
    // stops after the square's last row: the square's pixels must still
    // be libjpeg's, at every scale.
    for (w, h) in [(301u32, 733u32), (733, 301)] {
        let rgb = photo_like(w, h);
        for p in [
            Progressive::ycc((2, 2)),
            Progressive {
                turbo: false,
                restart: 3,
                ..Progressive::ycc((1, 1))
            },
            Progressive {
                separate: true,
                ..Progressive::ycc((2, 1))
            },
        ] {
            let jpeg = progressive_jpeg(p, w, h, rgb.as_raw());
            for m in 1..=8u8 {
                let ours = staged_at(&jpeg, usize::from(m)).unwrap();
                let full = libjpeg_scaled(&jpeg, m);
                let sq = scaled_square(
                    w,
                    h,
                    f64::from(m) / 8.0,
                    full.width() as usize,
                    full.height() as usize,
                );
                let theirs = image::imageops::crop_imm(
                    &full,
                    sq.cols.start as u32,
                    sq.rows.start as u32,
                    sq.cols.len() as u32,
                    sq.rows.len() as u32,
                )
                .to_image();
                assert_eq!(ours.dimensions(), theirs.dimensions(), "{w}x{h} at {m}/8");
                let db = psnr(&ours, &theirs);
                // As in the square files' comparisons (1/8 from DC alone
                // repeats subsampled chroma, libjpeg interpolates it).
                let least = match m {
                    1 => 38.0,
                    2 | 4 => 48.0,
                    _ => 65.0,
                };
                assert!(db >= least, "{w}x{h} {p:?} at {m}/8: PSNR {db:.1} dB");
            }
        }
    }
}

#[test]
fn narrow_progressive_jpegs_match_a_full_resolution_reference() {
    // Squares of 3200 (3/8, as up to 4799, the DC path's edge), 1400 (7/8)
    // and 700 (8/8): every scan decoded, the coefficients under the square
    // kept.
    let mozjpeg_444 = Progressive {
        turbo: false,
        restart: 5,
        ..Progressive::ycc((1, 1))
    };
    for (w, h, p) in [
        (3200u32, 3400u32, Progressive::ycc((2, 2))),
        (1400, 3000, mozjpeg_444),
        (2200, 700, mozjpeg_444),
    ] {
        let full = photo_like(w, h);
        let jpeg = progressive_jpeg(p, w, h, full.as_raw());
        let ours = decode(&convert(&jpeg, &Limits::default()).unwrap());
        let want = reference(&image::load_from_memory(&jpeg).unwrap().into_rgb8());
        let db = psnr(&ours, &want);
        assert!(db >= 30.0, "{w}x{h} {p:?}: PSNR {db:.1} dB");
    }
}

#[test]
fn frames_our_decoder_does_not_read_are_bounded_or_refused_with_a_reason() {
    // A header alone: SOI, the frame, a scan header, EOI.
    let file = |sof: u8, precision: u8, side: u16| {
        let mut f = vec![0xFF, 0xD8, 0xFF, sof, 0, 17, precision];
        f.extend(side.to_be_bytes());
        f.extend(side.to_be_bytes());
        f.extend([3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
        f.extend([0xFF, 0xDA, 0, 12, 3, 1, 0, 2, 0, 3, 0, 0, 0, 0, 0xFF, 0xD9]);
        f
    };
    // Arithmetic-coded progressive: libjpeg would hold 4096x4096x3x2
    // bytes of coefficients (96 MiB); refused before it reads a scan.
    let e = convert(&file(0xCA, 8, 4096), &Limits::default()).unwrap_err();
    assert!(
        e.0.contains("arithmetic-coded") && e.0.contains("needs 96 MiB"),
        "{e}"
    );
    // A small one goes to libjpeg (whose verdict on this empty scan is
    // its own).
    let e = convert(&file(0xCA, 8, 512), &Limits::default()).unwrap_err();
    assert!(!e.0.contains("arithmetic-coded"), "{e}");
    // Sequential arithmetic in several scans (the first lacks components):
    // held whole too. In one scan: streamed, so not bounded here.
    let mut several = file(0xC9, 8, 4096);
    let sos = several.len() - 16;
    several.splice(sos.., [0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0, 0xFF, 0xD9]);
    let e = convert(&several, &Limits::default()).unwrap_err();
    assert!(e.0.contains("needs 96 MiB"), "{e}");
    let e = convert(&file(0xC9, 8, 4096), &Limits::default()).unwrap_err();
    assert!(!e.0.contains("arithmetic-coded"), "{e}");
    // A baseline file in one scan is libjpeg's, streamed.
    let img = photo_like(64, 64);
    let baseline = mozjpeg_encode(mozjpeg::ColorSpace::JCS_RGB, 64, 64, img.as_raw());
    let mut input = &baseline[..];
    assert!(!progressive::prelude(&mut input).is_ours());
    // 12-bit progressive: libjpeg's refusal, before any pixel memory.
    let e = convert(&file(0xC2, 12, 4096), &Limits::default()).unwrap_err();
    assert!(e.0.contains("precision 12"), "{e}");
}

/// Offsets of a JPEG's SOS markers, and where the first scan's data
/// starts.
fn scans(jpeg: &[u8]) -> Vec<usize> {
    jpeg.windows(2)
        .enumerate()
        .filter(|(_, m)| *m == [0xFF, 0xDA])
        .map(|(i, _)| i)
        .collect()
}

fn scan_data(jpeg: &[u8], sos: usize) -> usize {
    sos + 2 + usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]))
}

#[test]
fn hostile_progressive_files_are_refused_never_a_crash() {
    let (w, h) = (301u32, 301u32);
    let jpeg = progressive_jpeg(Progressive::ycc((2, 2)), w, h, photo_like(w, h).as_raw());
    // At 1/8 (DC alone, AC scans skipped), and at 3/8 and 8/8 (every scan
    // decoded).
    for m in [1, 3, 8] {
        let stage = |bytes: &[u8]| {
            std::panic::catch_unwind(|| {
                let mut input = bytes;
                let prelude = progressive::prelude(&mut input);
                prelude.is_ours().then(|| {
                    progressive::stage_at(prelude, input, &Limits::default(), m)
                        .map(|s| s.rgb.len())
                })
            })
            .unwrap_or_else(|_| panic!("a panic at {m}/8"))
        };
        assert!(matches!(stage(&jpeg), Some(Ok(_))));
        // Truncated anywhere: refused (the header cut short is libjpeg's).
        for cut in (2..jpeg.len() - 1).step_by(97) {
            let r = stage(&jpeg[..cut]);
            assert!(!matches!(r, Some(Ok(_))), "{m}/8: cut at {cut}");
        }
        // A scan that never ends: the first scan's data runs to the end
        // of the file.
        let sos = scans(&jpeg);
        let endless: Vec<u8> = jpeg[..sos[0] + 200]
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0x55, 100_000))
            .collect();
        let r = stage(&endless);
        assert!(
            matches!(&r, Some(Err(e)) if e.0.contains("premature end")),
            "{m}/8: {r:?}"
        );
        // A bad Huffman code: sixteen 1-bits (stuffed 0xFF bytes) where
        // the first DC difference should be, then where an AC scan's
        // first symbol should be (which 1/8 never reads).
        for (i, scan) in [(0, "DC"), (1, "AC")] {
            let data = scan_data(&jpeg, sos[i]);
            let mut bad = jpeg.clone();
            bad.splice(data..data + 4, [0xFF, 0x00, 0xFF, 0x00]);
            let r = stage(&bad);
            if m == 1 && scan == "AC" {
                assert!(matches!(&r, Some(Ok(_))), "{m}/8, {scan}: {r:?}");
            } else {
                assert!(
                    matches!(&r, Some(Err(e)) if e.0.contains("Huffman")),
                    "{m}/8, {scan}: {r:?}"
                );
            }
        }
        // A header that lies about its size: 4000x4000 claimed, 301x301
        // there.
        let sof = jpeg.windows(2).position(|m| m == [0xFF, 0xC2]).unwrap();
        let mut liar = jpeg.clone();
        liar[sof + 5..sof + 9].copy_from_slice(&[0x0F, 0xA0, 0x0F, 0xA0]);
        let r = stage(&liar);
        assert!(matches!(&r, Some(Err(_))), "{m}/8: {r:?}");
        // A scan naming a component the frame lacks.
        let mut stranger = jpeg.clone();
        stranger[sos[0] + 5] = 0x11;
        let r = stage(&stranger);
        assert!(
            matches!(&r, Some(Err(e)) if e.0.contains("the frame lacks")),
            "{m}/8: {r:?}"
        );
        // Bytes flipped anywhere in the scans: a result, never a panic.
        let mut next = noise(m as u32);
        for _ in 0..300 {
            let mut mutant = jpeg.clone();
            for _ in 0..4 {
                let at = sos[0] + next() as usize % (jpeg.len() - sos[0]);
                mutant[at] = next() as u8;
            }
            stage(&mutant);
        }
    }
}

#[test]
fn big_progressive_jpegs_take_the_dc_path_and_match_a_full_resolution_reference() {
    let (w, h) = (6400u32, 4800u32);
    let full = photo_like(w, h);
    for p in [
        Progressive::ycc((2, 2)),
        Progressive {
            restart: 4,
            ..Progressive::ycc((1, 1))
        },
    ] {
        let jpeg = progressive_jpeg(p, w, h, full.as_raw());
        // The DC path is the one taken: its 1/8 square is 600 wide.
        let mut input = &jpeg[..];
        let prelude = progressive::prelude(&mut input);
        let staged = progressive::stage(prelude, input, &Limits::default()).unwrap();
        assert_eq!((staged.width, staged.height), (600, 600));
        let ours = decode(&convert(&jpeg, &Limits::default()).unwrap());
        let want = reference(&image::load_from_memory(&jpeg).unwrap().into_rgb8());
        let db = psnr(&ours, &want);
        assert!(db >= 30.0, "{p:?}: PSNR {db:.1} dB");
    }
}

#[test]
fn the_thumbhash_is_a_square_preview_with_the_images_average_colour() {
    use base64::Engine as _;
    let img = photo_like(1600, 1200);
    let png = encode_with(&img.clone().into(), image::ImageFormat::Png);
    let converted = convert_reader(&png[..], &Limits::default()).unwrap();
    let out = decode(&converted.jpeg);
    let hash = base64::engine::general_purpose::STANDARD
        .decode(&converted.thumbhash)
        .unwrap();
    let (w, h, rgba) = thumbhash::thumb_hash_to_rgba(&hash).unwrap();
    assert_eq!(w, h, "a square preview");
    let mean = |px: &mut dyn Iterator<Item = [u8; 3]>| {
        let (mut sum, mut n) = ([0f64; 3], 0f64);
        for p in px {
            for c in 0..3 {
                sum[c] += f64::from(p[c]);
            }
            n += 1.0;
        }
        sum.map(|s| s / n)
    };
    let preview = mean(&mut rgba.chunks_exact(4).map(|p| [p[0], p[1], p[2]]));
    let image = mean(&mut out.pixels().map(|p| p.0));
    for c in 0..3 {
        assert!(
            (preview[c] - image[c]).abs() <= 6.0,
            "channel {c}: preview {preview:?}, image {image:?}"
        );
    }
}
