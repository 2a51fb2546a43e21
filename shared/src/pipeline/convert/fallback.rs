//! The whole-image path, for the BMP encodings the streaming decoder leaves
//! out (RLE, bit fields, palettes):
//! the `image` crate decodes everything, then rows go through the same
//! shrinker. The limits are checked first, on the header (the crate's
//! `into_decoder` path does not check `max_alloc` itself).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};

use super::rows::{Layout, Shrinker, to_rgb};
use super::{Limits, Rejection, Staged, check_decoded, corrupt};
use crate::domain::ImageFormat;

pub(super) fn stage_bmp(bytes: &[u8], limits: &Limits) -> Result<Staged, Rejection> {
    let name = ImageFormat::Bmp.name();
    let bad = |e: image::ImageError| corrupt(name, e);
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Bmp)
        .into_decoder()
        .map_err(bad)?;
    let (w, h) = decoder.dimensions();
    // The decoder's buffer or the 8-bit copy rows are read from, whichever
    // is larger.
    let decoded = decoder.total_bytes().max(u64::from(w) * u64::from(h) * 4);
    check_decoded(name, w.into(), h.into(), decoded, limits)?;
    // The decoder's own allocation checks, as a second line behind ours.
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(limits.max_decoded_bytes + (64 << 20));
    decoder.set_limits(image_limits).map_err(bad)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(bad)?;

    let mut shrinker = Shrinker::new(w, h, orientation);
    if image.color().has_alpha() {
        let rgba = image.into_rgba8();
        let mut rgb = Vec::with_capacity(w as usize * 3);
        for (y, row) in rgba.chunks_exact(w as usize * 4).enumerate() {
            to_rgb(Layout::Rgba, row, &mut rgb);
            shrinker.push(y as u32, &rgb);
        }
    } else {
        let rgb = image.into_rgb8();
        for (y, row) in rgb.chunks_exact(w as usize * 3).enumerate() {
            shrinker.push(y as u32, row);
        }
    }
    Ok(shrinker.finish())
}
