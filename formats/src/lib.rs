//! The image formats Imagegram accepts, once. The API's content types, the
//! converter's sniffer, decoders and error texts (`imagegram::domain`
//! re-exports this type) and the CLI's sniffer and hints all come from
//! [`ImageFormat::ALL`]; `openapi.yaml`, which the web page reads at run
//! time, is tested against it (`tests/integration/formats.rs`). Adding a
//! format is a variant here (every `match` on it then asks for its arm),
//! its decoder, and its tests. No dependencies: the CLI takes it as it is.

/// An accepted image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Bmp,
}

impl ImageFormat {
    /// Every accepted format.
    pub const ALL: [ImageFormat; 3] = [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Bmp];

    pub const fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Bmp => "image/bmp",
        }
    }

    /// For people: `PNG`.
    pub const fn name(self) -> &'static str {
        match self {
            ImageFormat::Png => "PNG",
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Bmp => "BMP",
        }
    }

    /// The file name endings of the format, lower case.
    pub const fn extensions(self) -> &'static [&'static str] {
        match self {
            ImageFormat::Png => &["png"],
            ImageFormat::Jpeg => &["jpg", "jpeg"],
            ImageFormat::Bmp => &["bmp"],
        }
    }

    /// The bytes every file of the format starts with.
    pub const fn magic(self) -> &'static [u8] {
        match self {
            ImageFormat::Png => b"\x89PNG\r\n\x1a\n",
            ImageFormat::Jpeg => &[0xFF, 0xD8, 0xFF],
            ImageFormat::Bmp => b"BM",
        }
    }

    /// The format of a file from its first bytes (the name and the declared
    /// type are the client's word, not the file's).
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|f| bytes.starts_with(f.magic()))
    }

    /// The format a content type names (case and surrounding space aside).
    pub fn of_content_type(ct: &str) -> Option<Self> {
        let ct = ct.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|f| f.content_type() == ct)
    }

    /// The format a file name's ending names.
    pub fn of_extension(ext: &str) -> Option<Self> {
        let ext = ext.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|f| f.extensions().contains(&ext.as_str()))
    }

    /// "PNG, JPEG or BMP".
    pub fn names() -> String {
        or_list(&Self::ALL.map(Self::name))
    }

    /// "image/png, image/jpeg or image/bmp".
    pub fn content_types() -> String {
        or_list(&Self::ALL.map(Self::content_type))
    }
}

/// "a, b or c".
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_found_by_its_type_magic_and_endings() {
        for f in ImageFormat::ALL {
            assert_eq!(ImageFormat::of_content_type(f.content_type()), Some(f));
            assert_eq!(
                ImageFormat::of_content_type(&f.content_type().to_uppercase()),
                Some(f)
            );
            assert_eq!(ImageFormat::sniff(f.magic()), Some(f));
            for e in f.extensions() {
                assert_eq!(ImageFormat::of_extension(&e.to_uppercase()), Some(f));
            }
        }
        assert_eq!(ImageFormat::of_content_type("image/gif"), None);
        assert_eq!(ImageFormat::sniff(b"GIF89a"), None);
        assert_eq!(ImageFormat::of_extension("txt"), None);
        assert_eq!(ImageFormat::names(), "PNG, JPEG or BMP");
        assert_eq!(
            ImageFormat::content_types(),
            "image/png, image/jpeg or image/bmp"
        );
    }
}
