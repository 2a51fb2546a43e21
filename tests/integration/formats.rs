//! The accepted image formats are `imagegram_formats::ImageFormat::ALL`
//! (the API's content types, the converter's sniffer, decoders and error
//! texts, the CLI's sniffer and hints all come from it). `openapi.yaml` is
//! held to it here, and the web page reads its list from the API's
//! `/openapi.json`; no client keeps one of its own.

use std::collections::BTreeSet;

use imagegram::domain::ImageFormat;

fn accepted() -> BTreeSet<String> {
    ImageFormat::ALL
        .iter()
        .map(|f| f.content_type().to_owned())
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Every `image/...` type named in `text`.
fn image_types(text: &str) -> BTreeSet<String> {
    text.match_indices("image/")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '+' || *c == '-')
                .collect::<String>()
        })
        .filter(|t| t.len() > "image/".len())
        .collect()
}

#[test]
fn openapi_declares_exactly_the_accepted_content_types() {
    fn enums(v: &serde_json::Value, out: &mut Vec<BTreeSet<String>>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(e) = m.get("content_type").and_then(|c| c.get("enum")) {
                    out.push(
                        e.as_array()
                            .unwrap()
                            .iter()
                            .map(|s| s.as_str().unwrap().to_owned())
                            .collect(),
                    );
                }
                m.values().for_each(|v| enums(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| enums(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    enums(imagegram_tests::spec::spec().doc(), &mut found);
    assert!(
        !found.is_empty(),
        "openapi.yaml declares no content_type enum"
    );
    for e in found {
        assert_eq!(e, accepted());
    }
    assert_eq!(image_types(&read("openapi.yaml")), accepted());
}

/// No client keeps a list of its own: the CLI takes `imagegram-formats`
/// (the type itself), the web page the API's `/openapi.json` at run time
/// (which the test above holds to the type). A list written into either
/// fails here.
#[test]
fn the_clients_keep_no_list_of_formats_of_their_own() {
    for path in [
        "cli/src/upload.rs",
        "cli/src/main.rs",
        "web/index.html",
        "web/src/app.js",
        "web/src/upload.js",
        "web/src/api.js",
    ] {
        let text = read(path);
        assert_eq!(
            image_types(&text),
            BTreeSet::new(),
            "{path} names image types"
        );
        for f in ImageFormat::ALL {
            assert!(
                !text.contains(f.name()) && !text.contains(&format!(".{}", f.extensions()[0])),
                "{path} names the format {}",
                f.name()
            );
        }
    }
    assert!(read("cli/src/upload.rs").contains("ImageFormat::sniff"));
    assert!(read("web/src/app.js").contains("acceptedTypes("));
}

#[test]
fn the_formats_error_texts_come_from_the_list() {
    assert_eq!(ImageFormat::names(), "PNG, JPEG or BMP");
    let e = imagegram::domain::format_of_content_type("image/gif").unwrap_err();
    assert_eq!(
        e.public_message(),
        "content_type must be image/png, image/jpeg or image/bmp"
    );
    for f in ImageFormat::ALL {
        assert_eq!(ImageFormat::sniff(f.magic()), Some(f));
        assert_eq!(
            imagegram::domain::format_of_content_type(f.content_type()).unwrap(),
            f
        );
    }
}
