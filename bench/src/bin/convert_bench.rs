//! The conversion benchmark of docs/PERFORMANCE.md: our converter
//! (`imagegram-convert`, the Lambda's engine on a file) against libvips'
//! `vipsthumbnail` doing the same job, run alternately on the same inputs.
//!
//! Inputs are generated on first use into `--dir` (not committed): smooth
//! colour fields with per-pixel noise, tuned to the sizes of the issue, so
//! they compress like photographs rather than like flat colour.
//!
//! Per input it prints the median wall time of each side, the ratio, peak
//! RSS (`/usr/bin/time -f %M`), PSNR of each output against a
//! full-resolution Lanczos3 reference of the same centred square, and the
//! output sizes.
//!
//!   imagegram-convert-bench [--dir DIR] [--runs N] [--only NAME]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fast_image_resize as fir;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

const SIDE: u32 = imagegram::pipeline::convert::SIDE;

struct Input {
    name: &'static str,
    file: &'static str,
    /// The targets: time ratio to vips, peak RSS.
    max_ratio: f64,
    max_rss_mib: Option<u64>,
    make: fn(&Path),
}

const INPUTS: &[Input] = &[
    Input {
        name: "JPEG 12000x9000 q97",
        file: "photo-12000x9000-q97.jpg",
        max_ratio: 1.0,
        max_rss_mib: Some(64),
        make: |p| jpeg(p, 12_000, 9_000, 97, 36, None),
    },
    Input {
        name: "JPEG 16000x12000 q92",
        file: "photo-16000x12000-q92.jpg",
        max_ratio: 1.0,
        max_rss_mib: Some(64),
        make: |p| jpeg(p, 16_000, 12_000, 92, 30, None),
    },
    // Progressive, square of 4800 or more: decoded from their DC alone
    // (imagegram's `convert::progressive`); #22's targets: 4x faster than
    // vips, 128 MiB.
    Input {
        name: "JPEG 12000x9000 progressive q90",
        file: "photo-12000x9000-progressive-q90.jpg",
        max_ratio: 0.25,
        max_rss_mib: Some(128),
        make: |p| progressive(p, 12_000, 9_000, 90, 30, Sampling::Yuv420),
    },
    Input {
        name: "JPEG 16000x12500 progressive 4:4:4 q90",
        file: "photo-16000x12500-progressive-444-q90.jpg",
        max_ratio: 0.25,
        max_rss_mib: Some(128),
        make: |p| progressive(p, 16_000, 12_500, 90, 10, Sampling::Yuv444),
    },
    Input {
        name: "JPEG 16000x12500 progressive CMYK q30",
        file: "photo-16000x12500-progressive-cmyk-q30.jpg",
        max_ratio: 0.25,
        max_rss_mib: Some(128),
        make: |p| progressive(p, 16_000, 12_500, 30, 30, Sampling::Cmyk),
    },
    // Progressive with a centred square under 4800: every scan decoded
    // (at 3/8) down to the square's last row, only the square's low
    // coefficients kept; #22's 128 MiB. Standing tall, the rows below the
    // square are skipped; lying wide, every row is decoded.
    Input {
        name: "JPEG 4000x16000 progressive 4:2:0 q90 (narrow)",
        file: "photo-4000x16000-progressive-q90.jpg",
        max_ratio: 1.0,
        max_rss_mib: Some(128),
        make: |p| progressive(p, 4_000, 16_000, 90, 30, Sampling::Yuv420),
    },
    Input {
        name: "JPEG 16000x4000 progressive 4:2:0 q90 (narrow, wide)",
        file: "photo-16000x4000-progressive-q90.jpg",
        max_ratio: 1.0,
        max_rss_mib: Some(128),
        make: |p| progressive(p, 16_000, 4_000, 90, 30, Sampling::Yuv420),
    },
    Input {
        name: "JPEG 4799x20000 progressive CMYK q30 (narrow)",
        file: "photo-4799x20000-progressive-cmyk-q30.jpg",
        max_ratio: 1.0,
        max_rss_mib: Some(128),
        make: |p| progressive(p, 4_799, 20_000, 30, 30, Sampling::Cmyk),
    },
    Input {
        name: "PNG 7680x5120 RGB",
        file: "photo-7680x5120.png",
        max_ratio: 0.5,
        max_rss_mib: Some(64),
        make: |p| png(p, 7_680, 5_120, 14, false),
    },
    // Adam7: its passes scattered into the staged pixels as they arrive.
    Input {
        name: "PNG 7200x4800 RGB interlaced",
        file: "photo-7200x4800-interlaced.png",
        max_ratio: 0.5,
        max_rss_mib: Some(128),
        make: |p| interlaced_png(p, 7_200, 4_800, 14),
    },
    Input {
        name: "BMP 5800x5800 24-bit",
        file: "photo-5800x5800.bmp",
        max_ratio: 0.5,
        max_rss_mib: None,
        make: |p| bmp(p, 5_800, 5_800),
    },
    Input {
        name: "JPEG 4000x3000 EXIF 6",
        file: "photo-4000x3000-exif6.jpg",
        max_ratio: 1.0,
        max_rss_mib: Some(64),
        make: |p| jpeg(p, 4_000, 3_000, 90, 8, Some(6)),
    },
    Input {
        name: "PNG 1000x800 RGBA",
        file: "photo-1000x800-rgba.png",
        max_ratio: 1.0,
        max_rss_mib: Some(64),
        make: |p| png(p, 1_000, 800, 8, true),
    },
];

fn main() {
    let mut dir = PathBuf::from(".imagegram/bench-images");
    let mut runs = 5usize;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--dir" => dir = value().into(),
            "--runs" => runs = value().parse().expect("--runs N"),
            "--only" => only = Some(value()),
            other => panic!("unknown argument {other}; see the file's doc comment"),
        }
    }
    std::fs::create_dir_all(&dir).expect("input directory");
    // vipsthumbnail reads a relative -o against the input's directory.
    let dir = dir.canonicalize().expect("input directory");
    let ours_bin = std::env::current_exe()
        .expect("own path")
        .with_file_name("imagegram-convert");
    assert!(
        ours_bin.exists(),
        "{} missing: build the bench crate",
        ours_bin.display()
    );
    let vips_version = Command::new("vipsthumbnail")
        .arg("--vips-version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect(
            "vipsthumbnail not found: install Debian's libvips-tools (scripts/bench-convert does)",
        );
    println!("vipsthumbnail: {vips_version}; {runs} alternating runs per input; medians\n");
    println!(
        "| input | file MB | ours ms | vips ms | ratio (target) | ours peak RSS MiB (target) | vips peak RSS MiB | PSNR ours dB | PSNR vips dB | ours bytes | vips bytes | size ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for input in INPUTS {
        if only
            .as_deref()
            .is_some_and(|o| !input.name.contains(o) && !input.file.contains(o))
        {
            continue;
        }
        let path = dir.join(input.file);
        if !path.exists() {
            eprintln!("generating {}", path.display());
            (input.make)(&path);
        }
        let file_mb = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;
        let ours_out = dir.join(format!("{}.ours.jpg", input.file));
        let vips_out = dir.join(format!("{}.vips.jpg", input.file));
        let ours_cmd = || {
            let mut c = Command::new(&ours_bin);
            c.arg(&path).arg(&ours_out);
            c
        };
        let vips_cmd = || {
            let mut c = Command::new("vipsthumbnail");
            c.arg(&path)
                .args(["-s", "600x600", "-m", "centre", "-o"])
                .arg(format!("{}[Q=85,strip,background=255]", vips_out.display()));
            c
        };
        // One untimed run each: the input in the page cache for both.
        measure(ours_cmd());
        measure(vips_cmd());
        let (mut ours, mut vips) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(measure(ours_cmd()));
            vips.push(measure(vips_cmd()));
        }
        let median = |v: &mut Vec<(f64, u64)>| {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            let t = v[v.len() / 2].0;
            let rss = v.iter().map(|r| r.1).max().unwrap();
            (t, rss)
        };
        let (ours_ms, ours_rss) = median(&mut ours);
        let (vips_ms, vips_rss) = median(&mut vips);
        let reference = reference(&path);
        let quality = |out: &Path| {
            let img = image::open(out).expect("output decodes").into_rgb8();
            assert_eq!(
                img.dimensions(),
                (SIDE, SIDE),
                "{} is not 600x600",
                out.display()
            );
            psnr(&img, &reference)
        };
        let (ours_bytes, vips_bytes) = (
            std::fs::metadata(&ours_out).unwrap().len(),
            std::fs::metadata(&vips_out).unwrap().len(),
        );
        let ratio = ours_ms / vips_ms;
        let mark = |ok: bool| if ok { "" } else { " **over**" };
        println!(
            "| {} | {file_mb:.1} | {ours_ms:.0} | {vips_ms:.0} | {ratio:.2} (<= {}){} | {} ({}){} | {} | {:.1} | {:.1} | {ours_bytes} | {vips_bytes} | {:.2} |",
            input.name,
            input.max_ratio,
            mark(ratio <= input.max_ratio),
            ours_rss / 1024,
            input
                .max_rss_mib
                .map_or("as low as the format allows".into(), |m| format!("<= {m}")),
            mark(input.max_rss_mib.is_none_or(|m| ours_rss / 1024 <= m)),
            vips_rss / 1024,
            quality(&ours_out),
            quality(&vips_out),
            ours_bytes as f64 / vips_bytes as f64,
        );
    }
}

/// Wall milliseconds and peak RSS (KiB) of one run, via GNU time.
fn measure(cmd: Command) -> (f64, u64) {
    let rss_file = std::env::temp_dir().join(format!("imagegram-bench-rss-{}", std::process::id()));
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(&program)
        .args(&args);
    let start = Instant::now();
    let status = timed.status().expect("/usr/bin/time (Debian's `time`)");
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert!(status.success(), "{program:?} {args:?} failed: {status}");
    let rss = std::fs::read_to_string(&rss_file).expect("time's output");
    let rss = rss
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .parse()
        .expect("max RSS in KiB");
    (ms, rss)
}

/// The yardstick: the whole image at full resolution (EXIF orientation
/// applied, alpha over white), its centred square, Lanczos3 to 600x600.
fn reference(path: &Path) -> RgbImage {
    let mut reader = ImageReader::open(path)
        .unwrap()
        .with_guessed_format()
        .unwrap();
    reader.no_limits();
    let mut decoder = reader.into_decoder().unwrap();
    let orientation = decoder.orientation().unwrap();
    let mut img = DynamicImage::from_decoder(decoder).unwrap();
    img.apply_orientation(orientation);
    let rgb = if img.color().has_alpha() {
        let rgba = img.into_rgba8();
        RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            let [r, g, b, a] = rgba.get_pixel(x, y).0;
            let over = |c: u8| {
                ((u32::from(c) * u32::from(a) + 255 * (255 - u32::from(a)) + 127) / 255) as u8
            };
            image::Rgb([over(r), over(g), over(b)])
        })
    } else {
        img.into_rgb8()
    };
    let (w, h) = rgb.dimensions();
    let side = w.min(h);
    let src = fir::images::Image::from_vec_u8(w, h, rgb.into_raw(), fir::PixelType::U8x3).unwrap();
    let mut dst = fir::images::Image::new(SIDE, SIDE, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3))
        .crop(
            f64::from((w - side) / 2),
            f64::from((h - side) / 2),
            f64::from(side),
            f64::from(side),
        );
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
    10.0 * (255.0f64.powi(2) / (se / a.as_raw().len() as f64)).log10()
}

/// Row `y` of a `w` x `h` test picture: smooth colour fields, a few hard
/// edges, and per-pixel noise of +-`noise`, deterministic.
fn picture_row(w: u32, h: u32, y: u32, noise: u32, channels: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut state = 0x9E37_79B9u32 ^ y.wrapping_mul(0x85EB_CA6B);
    for x in 0..w {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let ring = (((fx - 0.5).powi(2) + (fy - 0.5).powi(2)).sqrt() * 40.0) as u32 % 2;
        let base = [
            fx * 180.0 + 30.0 * ring as f32,
            fy * 180.0 + 20.0,
            (1.0 - fx) * 120.0 + fy * 60.0 + 40.0 * ring as f32,
        ];
        for b in base {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let n = (state % (2 * noise + 1)) as f32 - noise as f32;
            out.push((b + n).clamp(0.0, 255.0) as u8);
        }
        if channels == 4 {
            // Opaque at the left, transparent at the right.
            out.push((255.0 * (1.0 - fx)) as u8);
        }
    }
}

fn jpeg(path: &Path, w: u32, h: u32, quality: u8, noise: u32, orientation: Option<u16>) {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_fastest_defaults();
    c.set_size(w as usize, h as usize);
    c.set_quality(f32::from(quality));
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut c = c.start_compress(file).unwrap();
    if let Some(o) = orientation {
        // EXIF: big-endian TIFF, one IFD entry, 0x0112 Orientation.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend(o.to_be_bytes());
        exif.extend([0; 6]);
        c.write_marker(mozjpeg::Marker::APP(1), &exif);
    }
    let mut row = Vec::new();
    for y in 0..h {
        picture_row(w, h, y, noise, 3, &mut row);
        c.write_scanlines(&row).unwrap();
    }
    c.finish().unwrap();
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sampling {
    Yuv420,
    Yuv444,
    Cmyk,
}

/// A progressive JPEG (libjpeg-turbo's simple progression: DC successive
/// approximation, spectral selection), as "save for web" writes them.
/// Noise is chosen to keep each file within the API's 100 MiB.
fn progressive(path: &Path, w: u32, h: u32, quality: u8, noise: u32, sampling: Sampling) {
    let space = if sampling == Sampling::Cmyk {
        mozjpeg::ColorSpace::JCS_CMYK
    } else {
        mozjpeg::ColorSpace::JCS_RGB
    };
    let mut c = mozjpeg::Compress::new(space);
    c.set_fastest_defaults();
    c.set_size(w as usize, h as usize);
    c.set_quality(f32::from(quality));
    if sampling == Sampling::Yuv444 {
        c.set_chroma_sampling_pixel_sizes((1, 1), (1, 1));
    }
    c.set_progressive_mode();
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut c = c.start_compress(file).unwrap();
    let mut row = Vec::new();
    for y in 0..h {
        picture_row(w, h, y, noise, 3, &mut row);
        if sampling == Sampling::Cmyk {
            // Adobe's inverted CMYK (libjpeg writes the marker): the
            // picture's complement as C, M, Y, and a K ramp.
            let k = (255 - y * 96 / h) as u8;
            row = row
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], k])
                .collect();
        }
        c.write_scanlines(&row).unwrap();
    }
    c.finish().unwrap();
}

fn png(path: &Path, w: u32, h: u32, noise: u32, alpha: bool) {
    let channels = if alpha { 4 } else { 3 };
    let mut all = Vec::with_capacity(w as usize * h as usize * channels);
    let mut row = Vec::new();
    for y in 0..h {
        picture_row(w, h, y, noise, channels, &mut row);
        all.extend_from_slice(&row);
    }
    let img: DynamicImage = if alpha {
        image::RgbaImage::from_raw(w, h, all).unwrap().into()
    } else {
        RgbImage::from_raw(w, h, all).unwrap().into()
    };
    img.save(path).unwrap();
}

/// The same picture as [`png`], interlaced: written plain, then copied by
/// libvips with Adam7 (the `png` crate writes no interlaced files).
fn interlaced_png(path: &Path, w: u32, h: u32, noise: u32) {
    let plain = path.with_extension("plain.png");
    png(&plain, w, h, noise, false);
    let status = Command::new("vips")
        .arg("copy")
        .arg(&plain)
        .arg(format!("{}[interlace]", path.display()))
        .status()
        .expect("vips runs");
    assert!(status.success(), "vips copy failed");
    std::fs::remove_file(&plain).unwrap();
}

fn bmp(path: &Path, w: u32, h: u32) {
    let mut all = Vec::with_capacity(w as usize * h as usize * 3);
    let mut row = Vec::new();
    for y in 0..h {
        picture_row(w, h, y, 4, 3, &mut row);
        all.extend_from_slice(&row);
    }
    DynamicImage::from(RgbImage::from_raw(w, h, all).unwrap())
        .save(path)
        .unwrap();
}
