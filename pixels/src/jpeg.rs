//! JPEG through libjpeg-turbo (mozjpeg's fork): the header is read first and
//! the limits applied; then the image is decoded at the smallest M/8 scale
//! that keeps the centred square at least [`STAGE_MIN`] wide, in the DCT
//! domain, which skips most of the inverse transform and colour work. Rows
//! below the square are never decoded. libjpeg's fatal errors unwind
//! (caught in [`super::convert_reader`]); of its warnings, the two that mean
//! the pixels are garbage (a premature end, a bad Huffman code) are made
//! fatal too, and the rest (extraneous bytes, common in camera files) pass.

use std::io::{BufRead, Read};

use mozjpeg::{ColorSpace, Decompress, Marker};
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr};

use super::{
    Limits, Rejection, STAGE_MIN, Staged, centre_square, check_dimensions, corrupt, orientation_of,
    scaled_square,
};

/// The most coefficient memory libjpeg may take for an arithmetic-coded
/// JPEG it holds whole (progressive, or in several scans), which
/// [`super::progressive`] does not read.
pub(super) const ARITHMETIC_MAX: u64 = 48 << 20;

pub(super) fn stage<R: BufRead>(mut input: R, limits: &Limits) -> Result<Staged, Rejection> {
    // The header first, by our own reader: a progressive frame (or a
    // sequential one in several scans) is decoded by `progressive`, in
    // bounded memory; everything else goes to libjpeg, which reads the
    // header's bytes again and streams it.
    let prelude = super::progressive::prelude(&mut input);
    if prelude.is_ours() {
        return super::progressive::stage(prelude, input, limits);
    }
    if let Some(f) = &prelude.frame
        && prelude.is_buffered_arithmetic()
    {
        // libjpeg keeps all of such an image's coefficients; only small
        // ones go to it.
        let held = f.coefficient_bytes();
        if held > ARITHMETIC_MAX {
            return Err(super::reject(format!(
                "the JPEG is arithmetic-coded and progressive (or in several scans), which is \
                 accepted up to {} MiB of coefficients (about {} megapixels at full colour \
                 resolution); this one needs {} MiB: save it as an ordinary (Huffman-coded) JPEG",
                ARITHMETIC_MAX >> 20,
                ARITHMETIC_MAX / 6 / 1_000_000,
                held >> 20
            )));
        }
    }
    let input = std::io::Cursor::new(prelude.bytes).chain(input);
    let bad = |e: std::io::Error| corrupt("JPEG", e);
    let mut d = Decompress::builder()
        .with_err(strict_errors())
        .with_markers(&[Marker::APP(1), Marker::APP(14)])
        .from_reader(input)
        .map_err(bad)?;
    let (w, h) = (d.width() as u32, d.height() as u32);
    let cmyk = matches!(d.color_space(), ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK);
    let channels = if cmyk { 4 } else { 3 };
    check_dimensions("JPEG", w.into(), h.into(), limits)?;
    let mut exif = None;
    let mut adobe = false;
    for m in d.markers() {
        match m.marker {
            Marker::APP(1) if m.data.starts_with(b"Exif\0\0") && exif.is_none() => {
                exif = Some(m.data[6..].to_vec());
            }
            Marker::APP(14) if m.data.starts_with(b"Adobe") => adobe = true,
            _ => {}
        }
    }
    let orientation = orientation_of(exif.as_deref());

    let (_, _, side) = centre_square(w, h);
    let m = scale_for(side);
    d.scale(m as u8);
    let mut started = if cmyk {
        d.to_colorspace(ColorSpace::JCS_CMYK)
    } else {
        // libjpeg-turbo converts grayscale and YCbCr to RGB itself.
        d.rgb()
    }
    .map_err(bad)?;
    let (ow, oh) = (started.width(), started.height());
    // Whole scaled pixels covering the square.
    let sq = scaled_square(w, h, f64::from(m) / 8.0, ow, oh);
    let (c0, c1, r0, r1) = (sq.cols.start, sq.cols.end, sq.rows.start, sq.rows.end);
    let mut line = vec![0u8; ow * channels];
    let mut rgb = Vec::with_capacity((c1 - c0) * (r1 - r0) * 3);
    for y in 0..r1 {
        started.read_scanlines_into(&mut line).map_err(bad)?;
        if y < r0 {
            continue;
        }
        let part = &line[c0 * channels..c1 * channels];
        if cmyk {
            cmyk_to_rgb(part, adobe, &mut rgb);
        } else {
            rgb.extend_from_slice(part);
        }
    }
    // Rows below the square stay undecoded: dropping the decompressor
    // aborts it.
    drop(started);
    Ok(Staged {
        rgb,
        width: (c1 - c0) as u32,
        height: (r1 - r0) as u32,
        crop: sq.crop,
        orientation,
        source: (w, h),
    })
}

/// The numerator M of the M/8 decoding scale for a square of `side`
/// pixels: the smallest that keeps it at least [`STAGE_MIN`] wide, 8 (no
/// scaling) for small images.
pub(super) fn scale_for(side: u32) -> u32 {
    (1..=8u32)
        .find(|m| u64::from(side) * u64::from(*m) / 8 >= u64::from(STAGE_MIN))
        .unwrap_or(8)
}

/// CMYK to RGB. Adobe's files (an APP14 "Adobe" marker, which YCCK always
/// has) store the channels inverted, 255 meaning no ink; others store ink.
pub(super) fn cmyk_to_rgb(src: &[u8], inverted: bool, dst: &mut Vec<u8>) {
    for p in src.chunks_exact(4) {
        let [c, m, y, k] = if inverted {
            [p[0], p[1], p[2], p[3]]
        } else {
            [255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3]]
        };
        let k = u32::from(k);
        dst.extend([c, m, y].map(|v| ((u32::from(v) * k + 127) / 255) as u8));
    }
}

/// libjpeg's standard error manager with our two hooks.
fn strict_errors() -> jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills in every field of a zeroed manager.
    unsafe {
        let mut err: jpeg_error_mgr = std::mem::zeroed();
        mozjpeg_sys::jpeg_std_error(&mut err);
        err.error_exit = Some(fatal);
        err.emit_message = Some(warning);
        err
    }
}

/// libjpeg's message for the current code, printf arguments filled in.
///
/// # Safety
/// `cinfo.err` must point at a manager set up by `jpeg_std_error`.
unsafe fn message(cinfo: &mut jpeg_common_struct) -> String {
    // SAFETY: per the contract above; format_message writes at most
    // JMSG_LENGTH_MAX (200) bytes, NUL included, and the binding's
    // 80-byte array type is narrower than the C prototype.
    unsafe {
        let err = &*cinfo.err;
        let code = err.msg_code;
        let Some(format) = err.format_message else {
            return format!("libjpeg message {code}");
        };
        let mut buf = [0u8; 200];
        let format: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8) =
            std::mem::transmute(format);
        format(cinfo, buf.as_mut_ptr());
        let text = std::ffi::CStr::from_bytes_until_nul(&buf)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("libjpeg: {text}")
    }
}

extern "C-unwind" fn fatal(cinfo: &mut jpeg_common_struct) {
    // SAFETY: libjpeg calls this with the manager of strict_errors().
    let text = unsafe { message(cinfo) };
    // Unwinds through libjpeg (built with -fexceptions by mozjpeg-sys's
    // `unwinding` feature) to convert_reader's catch_unwind.
    std::panic::resume_unwind(Box::new(text));
}

extern "C-unwind" fn warning(cinfo: &mut jpeg_common_struct, level: std::os::raw::c_int) {
    // SAFETY: as in fatal().
    let code = unsafe { (*cinfo.err).msg_code };
    let garbage = code == mozjpeg_sys::JWRN_JPEG_EOF || code == mozjpeg_sys::JWRN_HUFF_BAD_CODE;
    if level < 0 && garbage {
        fatal(cinfo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_conversion_follows_the_adobe_convention() {
        let mut out = Vec::new();
        // No ink at all: white either way.
        cmyk_to_rgb(&[255, 255, 255, 255], true, &mut out);
        cmyk_to_rgb(&[0, 0, 0, 0], false, &mut out);
        // Full cyan: red channel off.
        cmyk_to_rgb(&[0, 255, 255, 255], true, &mut out);
        assert_eq!(out, [255, 255, 255, 255, 255, 255, 0, 255, 255]);
    }
}
