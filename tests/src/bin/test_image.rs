//! Writes a big test photo for the clients' end-to-end tests: coloured bands
//! under per-pixel noise (so it is as large as a camera's JPEG of that size
//! and its 600x600 still shows the bands), as a baseline JPEG.
//!
//!   imagegram-test-image OUT [WIDTH HEIGHT [NOISE [QUALITY]]]
//!   (defaults: 6000 4000 40 92, about 30 MB)

use std::io::BufWriter;

use image::codecs::jpeg::JpegEncoder;
use imagegram_tests::images::{bands, with_noise};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: imagegram-test-image OUT [WIDTH HEIGHT [NOISE [QUALITY]]]");
        std::process::exit(2);
    };
    let num = |i: usize, default: u32| -> Result<u32, Box<dyn std::error::Error>> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (w, h) = (num(1, 6000)?, num(2, 4000)?);
    let noise = u8::try_from(num(3, 40)?)?;
    let quality = u8::try_from(num(4, 92)?)?;
    let img = with_noise(
        bands(
            w,
            h,
            &[[200, 40, 40], [40, 160, 60], [40, 70, 200], [230, 200, 60]],
        ),
        noise,
    );
    let file = BufWriter::new(std::fs::File::create(out)?);
    JpegEncoder::new_with_quality(file, quality).encode_image(&img)?;
    let size = std::fs::metadata(out)?.len();
    println!("{out}: {w}x{h} JPEG, {size} bytes");
    Ok(())
}
