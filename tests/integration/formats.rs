//! The accepted image formats are `imagegram::domain::ImageFormat::ALL`
//! (the API's content types, the converter's sniffer, decoders and error
//! texts all come from it). What lives outside the Rust code is held to it
//! here: `openapi.yaml`, the CLI's sniffer and hint, the web page's file
//! pickers and type guess. Add a format to the enum and these name every
//! place still to change.

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

#[test]
fn the_cli_sniffs_and_names_exactly_the_accepted_formats() {
    let upload = read("cli/src/upload.rs");
    assert_eq!(
        image_types(&upload),
        accepted(),
        "cli/src/upload.rs content_type()"
    );
    let main = read("cli/src/main.rs");
    let hint = main
        .lines()
        .find(|l| l.contains("415 =>"))
        .expect("the CLI's 415 hint");
    for f in ImageFormat::ALL {
        assert!(hint.contains(f.name()), "the 415 hint lacks {}", f.name());
    }
}

#[test]
fn the_web_page_offers_and_guesses_exactly_the_accepted_formats() {
    let page = read("web/index.html");
    let accepts: Vec<&str> = page
        .match_indices("accept=\"")
        .map(|(i, m)| page[i + m.len()..].split('"').next().unwrap())
        .collect();
    assert!(!accepts.is_empty(), "no file picker in web/index.html");
    for a in accepts {
        let types: BTreeSet<String> = a.split(',').map(str::to_owned).collect();
        assert_eq!(types, accepted(), "a file picker's accept list");
    }
    assert_eq!(
        image_types(&read("web/src/upload.js")),
        accepted(),
        "web/src/upload.js contentType()"
    );
}

#[test]
fn the_formats_error_texts_come_from_the_list() {
    assert_eq!(ImageFormat::names(), "PNG, JPEG or BMP");
    let e = ImageFormat::from_content_type("image/gif").unwrap_err();
    assert_eq!(
        e.public_message(),
        "content_type must be image/png, image/jpeg or image/bmp"
    );
    for f in ImageFormat::ALL {
        assert_eq!(ImageFormat::sniff(f.magic()), Some(f));
        assert_eq!(ImageFormat::from_content_type(f.content_type()).unwrap(), f);
    }
}
