//! PNG, row by row: the `png` crate inflates and unfilters one row at a
//! time (16-bit, palette, low bit depths and tRNS expanded to 8-bit), and
//! the [`Shrinker`] averages it away at once. Adam7-interlaced files
//! deliver each pass's rows in turn, every pixel once: [`Scatter`] adds
//! each to its staged pixel as it comes.

use std::io::{self, BufRead, Read, Seek, SeekFrom};

use ::png::{ColorType, Decoder, Transformations};

use super::rows::{Layout, Scatter, Shrinker, adam7_rows, to_rgb};
use super::{Limits, Rejection, Staged, check_dimensions, corrupt, orientation_of};

pub(super) fn stage<R: BufRead>(input: R, limits: &Limits) -> Result<Staged, Rejection> {
    let bad = |e: ::png::DecodingError| corrupt("PNG", e);
    // The crate's own allocation cap, behind ours.
    let png_limits = ::png::Limits {
        bytes: usize::try_from(limits.max_decoded_bytes).unwrap_or(usize::MAX),
    };
    let mut decoder = Decoder::new_with_limits(Forward(input), png_limits);
    let header = decoder.read_header_info().map_err(bad)?;
    let (w, h) = (header.width, header.height);
    check_dimensions("PNG", w.into(), h.into(), limits)?;
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(bad)?;
    let orientation = orientation_of(reader.info().exif_metadata.as_deref());
    let layout = match reader.output_color_type().0 {
        ColorType::Grayscale => Layout::Gray,
        ColorType::GrayscaleAlpha => Layout::GrayAlpha,
        ColorType::Rgb => Layout::Rgb,
        ColorType::Rgba => Layout::Rgba,
        ColorType::Indexed => return Err(corrupt("PNG", "palette left unexpanded")),
    };
    let mut shrinker = Shrinker::new(w, h, orientation);
    let mut rgb = Vec::with_capacity(w as usize * 3);
    let mut push = |y: u32, row: &[u8], shrinker: &mut Shrinker| {
        if !shrinker.wants(y) {
            return;
        }
        if layout == Layout::Rgb {
            shrinker.push(y, row);
        } else {
            to_rgb(layout, row, &mut rgb);
            shrinker.push(y, &rgb);
        }
    };
    if reader.info().interlaced {
        // Adam7: every pixel once, pass by pass, each added to its staged
        // pixel as it comes ([`Scatter`]); only beyond the factor its sums
        // hold is the image decoded whole.
        let Some(mut scatter) = Scatter::new(w, h, orientation) else {
            let size = reader
                .output_buffer_size()
                .ok_or_else(|| corrupt("PNG", "image too large to address"))?;
            let mut whole = vec![0; size];
            let frame = reader.next_frame(&mut whole).map_err(bad)?;
            for (y, row) in whole.chunks_exact(frame.line_size).enumerate() {
                push(y as u32, row, &mut shrinker);
            }
            return Ok(shrinker.finish());
        };
        for (y, start, step, samples) in adam7_rows(w, h) {
            let row = reader
                .next_interlaced_row()
                .map_err(bad)?
                .ok_or_else(|| corrupt("PNG", "an interlaced pass ends early"))?;
            if !scatter.wants(y) {
                continue;
            }
            to_rgb(layout, row.data(), &mut rgb);
            if rgb.len() != samples as usize * 3 {
                return Err(corrupt("PNG", "an interlaced row of the wrong length"));
            }
            scatter.add(y, start, step, &rgb);
        }
        return Ok(scatter.finish());
    } else {
        let mut y = 0;
        while let Some(row) = reader.next_row().map_err(bad)? {
            push(y, row.data(), &mut shrinker);
            y += 1;
        }
        if y < h {
            return Err(corrupt("PNG", format!("{y} of {h} rows")));
        }
    }
    Ok(shrinker.finish())
}

/// The `png` decoder's reader bound asks for `Seek`, which a download
/// stream cannot do; its row decoder only reads forward, so a seek is
/// refused rather than faked.
struct Forward<R>(R);

impl<R: Read> Read for Forward<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: BufRead> BufRead for Forward<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.0.consume(amt)
    }
}

impl<R> Seek for Forward<R> {
    fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the PNG decoder asked to seek a forward-only stream",
        ))
    }
}
