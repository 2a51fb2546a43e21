//! The conversion pipeline end to end: upload, S3 event, SQS, converter,
//! results queue, finalizer, MySQL; pixels checked on the served JPEG.

use std::time::Instant;

use image::{ImageFormat, Rgb, RgbImage};
use imagegram::pipeline::finalizer::GAVE_UP;
use imagegram_tests::images::{
    bands, encode_rgb, interlaced_png, jpeg_claiming, jpeg_with_orientation, png_bomb,
    progressive_jpeg, transparent_png, with_noise,
};
use imagegram_tests::{TestApp, eventually, spawn_app};

const RED: [u8; 3] = [230, 20, 20];
const GREEN: [u8; 3] = [20, 230, 20];
const BLUE: [u8; 3] = [20, 20, 230];

fn close(p: &Rgb<u8>, want: [u8; 3]) -> bool {
    p.0.iter().zip(want).all(|(a, b)| a.abs_diff(b) < 40)
}

async fn publish(app: &TestApp, content_type: &str, bytes: &[u8]) -> RgbImage {
    let id = app.post_image("alice", content_type, bytes).await;
    let post = app.wait_until_final(&id, "alice").await;
    assert_eq!(post["status"], "published", "{post}");
    let img = app.fetch_image(&post).await;
    assert_eq!(img.dimensions(), (600, 600));
    img
}

#[tokio::test]
async fn a_png_declared_as_jpeg_converts() {
    let app = spawn_app().await;
    let img = publish(
        &app,
        "image/jpeg",
        &encode_rgb(&bands(64, 64, &[GREEN]), ImageFormat::Png),
    )
    .await;
    assert!(close(img.get_pixel(300, 300), GREEN));
}

#[tokio::test]
async fn bmp_converts() {
    let app = spawn_app().await;
    let img = publish(
        &app,
        "image/bmp",
        &encode_rgb(&bands(800, 700, &[BLUE]), ImageFormat::Bmp),
    )
    .await;
    assert!(close(img.get_pixel(10, 590), BLUE));
}

#[tokio::test]
async fn progressive_jpegs_narrow_and_tall_convert() {
    // Read by the converter's own decoder, every scan decoded at 8/8 (the
    // squares are under 1372 pixels): a 900x2400 file, whose scans stop
    // after the square's last row, and a 1400x600 one. Vertical red | blue
    // halves under noise: the centred square shows both, red left and blue
    // right.
    let app = spawn_app().await;
    for (w, h) in [(900, 2400), (1400, 600)] {
        let jpeg = progressive_jpeg(&with_noise(bands(w, h, &[RED, BLUE]), 20));
        assert!(
            jpeg.windows(2).any(|m| m == [0xFF, 0xC2]),
            "a progressive frame"
        );
        let img = publish(&app, "image/jpeg", &jpeg).await;
        assert!(close(img.get_pixel(100, 300), RED), "{w}x{h}");
        assert!(close(img.get_pixel(500, 300), BLUE), "{w}x{h}");
    }
}

#[tokio::test]
async fn large_originals_stream_through_the_fast_paths() {
    // Multi-part uploads whose bodies reach the decoders in many reads from
    // S3: a 6000x4000 JPEG (decoded at 3/8 scale in the DCT domain), a
    // 2700x2600 BMP (rows streamed bottom up) and a 3000x2400 PNG (rows
    // streamed top down). Red | green | blue thirds under noise: the centred
    // square shows a quarter red, half green, a quarter blue.
    let app = spawn_app().await;
    let files = [
        (
            "image/jpeg",
            encode_rgb(
                &with_noise(bands(6000, 4000, &[RED, GREEN, BLUE]), 40),
                ImageFormat::Jpeg,
            ),
        ),
        (
            "image/bmp",
            encode_rgb(
                &with_noise(bands(2700, 2600, &[RED, GREEN, BLUE]), 40),
                ImageFormat::Bmp,
            ),
        ),
        (
            "image/png",
            encode_rgb(
                &with_noise(bands(3000, 2400, &[RED, GREEN, BLUE]), 40),
                ImageFormat::Png,
            ),
        ),
    ];
    for (content_type, bytes) in files {
        assert!(
            bytes.len() > 10 << 20,
            "{content_type}: {} bytes",
            bytes.len()
        );
        let img = publish(&app, content_type, &bytes).await;
        for ((x, y), want) in [((20, 300), RED), ((300, 300), GREEN), ((580, 300), BLUE)] {
            let p = img.get_pixel(x, y);
            assert!(close(p, want), "{content_type} ({x},{y}) = {p:?}");
        }
    }
}

/// An interlaced PNG converts to the very JPEG its non-interlaced twin
/// does (the same staged pixels, summed as they arrive), in every colour
/// type and depth the converter takes, at shrink factors 1 and 2, odd
/// sizes included.
#[test]
fn interlaced_pngs_convert_exactly_as_their_non_interlaced_twins() {
    use imagegram::pipeline::convert::{Limits, convert};
    use imagegram_tests::images::RawPng;
    let shade = |x: u32, y: u32, w: u32, h: u32| -> [u8; 3] {
        [
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x * 7 + y * 13) % 251) as u8,
        ]
    };
    let palette: Vec<u8> = (0..=255u8).flat_map(|i| [i, 255 - i, i / 2]).collect();
    let alphas: Vec<u8> = (0..=255u8)
        .map(|i| if i % 3 == 0 { 0 } else { 255 - i / 4 })
        .collect();
    for (w, h) in [(901, 703), (2501, 2403)] {
        type Pixel = Box<dyn Fn(u32, u32, &mut Vec<u8>)>;
        let cases: Vec<(&str, RawPng, Pixel)> = vec![
            (
                "RGB 8",
                RawPng::rgb8(w, h),
                Box::new(move |x, y, o: &mut Vec<u8>| o.extend(shade(x, y, w, h))),
            ),
            (
                "RGBA 8",
                RawPng {
                    colour_type: 6,
                    ..RawPng::rgb8(w, h)
                },
                Box::new(move |x, y, o: &mut Vec<u8>| {
                    o.extend(shade(x, y, w, h));
                    o.push(((x + y) % 256) as u8);
                }),
            ),
            (
                "grey+alpha 8",
                RawPng {
                    colour_type: 4,
                    ..RawPng::rgb8(w, h)
                },
                Box::new(move |x, y, o: &mut Vec<u8>| {
                    o.extend([shade(x, y, w, h)[0], (y % 256) as u8])
                }),
            ),
            (
                "RGB 16",
                RawPng {
                    bit_depth: 16,
                    ..RawPng::rgb8(w, h)
                },
                Box::new(move |x, y, o: &mut Vec<u8>| {
                    for v in shade(x, y, w, h) {
                        o.extend((u16::from(v) * 257 + (x % 7) as u16).to_be_bytes());
                    }
                }),
            ),
            (
                "palette 8 with tRNS",
                RawPng {
                    colour_type: 3,
                    palette: Some((palette.clone(), Some(alphas.clone()))),
                    ..RawPng::rgb8(w, h)
                },
                Box::new(move |x, y, o: &mut Vec<u8>| o.push(((x / 3 + y / 5) % 256) as u8)),
            ),
        ];
        for (name, png, pixel) in cases {
            let interlaced = png.write(true, &pixel);
            let plain = png.write(false, &pixel);
            assert_eq!(interlaced[28], 1, "{name}: the interlace flag");
            let a = convert(&interlaced, &Limits::default()).unwrap();
            let b = convert(&plain, &Limits::default()).unwrap();
            assert!(
                a == b,
                "{name} {w}x{h}: the interlaced file converts differently"
            );
        }
    }
}

#[tokio::test]
async fn interlaced_pngs_are_scattered_into_the_staged_image() {
    // Adam7 delivers rows out of order; each pixel is summed into its
    // staged pixel as it comes. The picture must come out the same.
    let app = spawn_app().await;
    let png = interlaced_png(&bands(1500, 1300, &[RED, GREEN, BLUE]));
    assert_eq!(png[28], 1, "the interlace flag is set");
    let img = publish(&app, "image/png", &png).await;
    for ((x, y), want) in [((20, 300), RED), ((300, 300), GREEN), ((580, 300), BLUE)] {
        let p = img.get_pixel(x, y);
        assert!(close(p, want), "({x},{y}) = {p:?}");
    }
}

#[tokio::test]
async fn a_wide_image_is_cropped_not_stretched() {
    let app = spawn_app().await;
    // Red | green | blue thirds: the centred square is all green. Stretching
    // would show red and blue at the edges.
    let img = publish(
        &app,
        "image/jpeg",
        &encode_rgb(&bands(1800, 600, &[RED, GREEN, BLUE]), ImageFormat::Jpeg),
    )
    .await;
    for (x, y) in [(5, 300), (300, 300), (594, 300), (5, 5), (594, 594)] {
        assert!(
            close(img.get_pixel(x, y), GREEN),
            "({x},{y}) = {:?}",
            img.get_pixel(x, y)
        );
    }
}

#[tokio::test]
async fn transparency_turns_white() {
    let app = spawn_app().await;
    let img = publish(&app, "image/png", &transparent_png(300, 200)).await;
    for (x, y) in [(0, 0), (300, 300), (599, 599)] {
        assert!(
            img.get_pixel(x, y).0.iter().all(|c| *c > 240),
            "{:?}",
            img.get_pixel(x, y)
        );
    }
}

#[tokio::test]
async fn exif_orientation_6_rotates_clockwise() {
    let app = spawn_app().await;
    // Stored sideways: left half red, right half blue. Orientation 6 means
    // "rotate 90 degrees clockwise to display": red ends on top.
    let stored = bands(800, 800, &[RED, BLUE]);
    let img = publish(&app, "image/jpeg", &jpeg_with_orientation(&stored, 6)).await;
    assert!(
        close(img.get_pixel(300, 100), RED),
        "top: {:?}",
        img.get_pixel(300, 100)
    );
    assert!(
        close(img.get_pixel(300, 500), BLUE),
        "bottom: {:?}",
        img.get_pixel(300, 500)
    );
    // Metadata is stripped: no EXIF block in the served file.
    let post = app.get("/posts", "bob").await.body["posts"][0].clone();
    let bytes = app
        .http
        .get(post["image_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"Exif\0\0"));
}

#[tokio::test]
async fn hostile_and_broken_files_fail_fast_with_a_reason() {
    let app = spawn_app().await;
    let png = encode_rgb(&bands(64, 64, &[RED]), ImageFormat::Png);
    let big_jpeg = encode_rgb(&with_noise(bands(800, 600, &[RED]), 30), ImageFormat::Jpeg);
    let bmp = encode_rgb(&bands(300, 200, &[RED]), ImageFormat::Bmp);
    // Progressive, read by the converter's own decoder: cut short, an AC
    // scan's first code broken (sixteen 1-bits), a scan that never ends.
    let progressive = progressive_jpeg(&with_noise(bands(400, 1000, &[RED, BLUE]), 30));
    let scans: Vec<usize> = progressive
        .windows(2)
        .enumerate()
        .filter(|(_, m)| *m == [0xFF, 0xDA])
        .map(|(i, _)| i)
        .collect();
    let data = |sos: usize| {
        sos + 2
            + usize::from(u16::from_be_bytes([
                progressive[sos + 2],
                progressive[sos + 3],
            ]))
    };
    let mut bad_code = progressive.clone();
    let ac = data(scans[1]);
    bad_code.splice(ac..ac + 4, [0xFF, 0x00, 0xFF, 0x00]);
    let endless: Vec<u8> = progressive[..scans[0] + 200]
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0x55, 200_000))
        .collect();
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "truncated progressive JPEG",
            "image/jpeg",
            progressive[..progressive.len() * 2 / 3].to_vec(),
            "JPEG image is corrupt or truncated",
        ),
        (
            "progressive JPEG with a bad Huffman code",
            "image/jpeg",
            bad_code,
            "bad Huffman code",
        ),
        (
            "progressive JPEG whose scan never ends",
            "image/jpeg",
            endless,
            "premature end",
        ),
        (
            "text",
            "image/png",
            b"hello, I am not an image at all".to_vec(),
            "not a PNG, JPEG or BMP",
        ),
        (
            "truncated PNG",
            "image/png",
            png[..png.len() / 2].to_vec(),
            "corrupt or truncated",
        ),
        (
            "truncated JPEG",
            "image/jpeg",
            big_jpeg[..big_jpeg.len() / 2].to_vec(),
            "JPEG image is corrupt or truncated",
        ),
        (
            "truncated BMP",
            "image/bmp",
            bmp[..bmp.len() / 2].to_vec(),
            "BMP image is corrupt or truncated",
        ),
        (
            "JPEG with garbage after its start marker",
            "image/jpeg",
            b"\xFF\xD8\xFF\x00garbage and more garbage".to_vec(),
            "JPEG image is corrupt",
        ),
        (
            "GIF in disguise",
            "image/png",
            b"GIF89a\x01\0\x01\0\x80\0\0\xff\xff\xff\0\0\0!".to_vec(),
            "GIF",
        ),
        (
            "WebP in disguise",
            "image/jpeg",
            b"RIFF\x1a\0\0\0WEBPVP8 \x0e\0\0\0junkjunkjunkju".to_vec(),
            "WebP",
        ),
        (
            "zlib bomb PNG",
            "image/png",
            png_bomb(40_000),
            "40000x40000",
        ),
        (
            "JPEG claiming 50000x50000",
            "image/jpeg",
            jpeg_claiming(50_000, 50_000),
            "50000x50000",
        ),
    ];
    let started = Instant::now();
    let mut ids = Vec::new();
    for (name, ct, bytes, _) in &cases {
        ids.push((name, app.post_image("alice", ct, bytes).await));
    }
    for ((name, id), (_, _, _, reason)) in ids.iter().zip(&cases) {
        let post = app.wait_until_final(id, "alice").await;
        assert_eq!(post["status"], "failed", "{name}: {post}");
        let why = post["failure_reason"].as_str().unwrap_or_default();
        assert!(why.contains(reason), "{name}: {why}");
        assert!(post["image_url"].is_null());
        assert!(
            !app.object_exists(&format!("converted/{id}.jpg")).await,
            "{name}"
        );
        // Failed posts are their author's alone.
        assert_eq!(app.get(&format!("/posts/{id}"), "bob").await.status, 404);
    }
    // Refused in one pass: each reason above is the converter's own, not the
    // dead-letter one, and nothing waits in the queues. (The time is printed,
    // not asserted: a slow machine is no failure.)
    println!(
        "{} hostile uploads failed in {:?}",
        cases.len(),
        started.elapsed()
    );
    eventually("the conversion queue to drain", async || {
        app.queue_depth(&app.queues.conversion.url).await == 0
    })
    .await;
    assert_eq!(app.queue_depth(&app.queues.conversion_dlq.url).await, 0);
}

async fn send(app: &TestApp, url: &str, body: &str) {
    app.sqs
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn repeated_and_late_events_change_nothing() {
    let app = spawn_app().await;
    let id = app
        .post_image(
            "alice",
            "image/png",
            &encode_rgb(&bands(700, 700, &[GREEN]), ImageFormat::Png),
        )
        .await;
    let post = app.wait_until_final(&id, "alice").await;
    assert_eq!(post["status"], "published");
    let head = |app: &TestApp| {
        let (s3, bucket, key) = (
            app.s3.clone(),
            app.bucket.clone(),
            format!("converted/{id}.jpg"),
        );
        async move {
            s3.head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap()
                .last_modified()
                .cloned()
        }
    };
    let converted_at = head(&app).await;

    // The same S3 event again, as AWS may deliver it, and a late "failed"
    // result for the published post.
    let event = serde_json::json!({ "Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T10:00:00.000Z", "eventName": "ObjectCreated:CompleteMultipartUpload",
        "s3": { "s3SchemaVersion": "1.0", "bucket": { "name": app.bucket, "arn": format!("arn:aws:s3:::{}", app.bucket) },
                "object": { "key": format!("originals/{id}"), "size": 1 } } }] });
    send(&app, &app.queues.conversion.url, &event.to_string()).await;
    send(&app, &app.queues.conversion.url, &event.to_string()).await;
    let late = serde_json::json!({ "post_id": id, "outcome": "failed", "reason": "late" });
    send(&app, &app.queues.results.url, &late.to_string()).await;
    eventually("queues to drain", async || {
        app.queue_depth(&app.queues.conversion.url).await == 0
            && app.queue_depth(&app.queues.results.url).await == 0
    })
    .await;
    let again = app.get(&format!("/posts/{id}"), "alice").await.body;
    assert_eq!(again["status"], "published");
    assert!(again.get("failure_reason").is_none());
    assert_eq!(
        head(&app).await,
        converted_at,
        "the repeat found the work done and did not convert again"
    );
    // Four events for one original (moto's two, then two repeats): one
    // download, one converted image. The HEAD of converted/<id>.jpg that
    // tells a repeat apart is what the converter's s3:GetObject on
    // converted/* is for.
    let calls = app.recorder.calls();
    let count = |op: &str, key: &str| {
        calls
            .iter()
            .filter(|c| c.operation == op && c.resource.ends_with(key))
            .count()
    };
    assert_eq!(count("GetObject", &format!("/originals/{id}")), 1);
    assert_eq!(count("PutObject", &format!("/converted/{id}.jpg")), 1);
    assert!(count("HeadObject", &format!("/converted/{id}.jpg")) >= 4);
}

#[tokio::test]
async fn test_events_and_malformed_messages_never_jam_the_queue() {
    let app = spawn_app().await;
    let q = app.queues.conversion.url.clone();
    for junk in [
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T10:00:00.000Z","Bucket":"b"}"#,
        "not json at all",
        "{}",
        r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"elsewhere"},"object":{"key":"x"}}}]}"#,
        r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"BUCKET"},"object":{"key":"originals%2Fnot-an-id"}}}]}"#,
    ] {
        send(&app, &q, &junk.replace("BUCKET", &app.bucket)).await;
    }
    let id = app
        .post_image(
            "alice",
            "image/png",
            &encode_rgb(&bands(50, 50, &[RED]), ImageFormat::Png),
        )
        .await;
    assert_eq!(
        app.wait_until_final(&id, "alice").await["status"],
        "published"
    );
    eventually("the conversion queue to drain", async || {
        app.queue_depth(&q).await == 0
    })
    .await;
    assert_eq!(
        app.queue_depth(&app.queues.conversion_dlq.url).await,
        0,
        "nothing dead-lettered"
    );
}

#[tokio::test]
async fn a_message_that_keeps_failing_lands_in_the_dlq_and_its_post_fails() {
    // The results queue is gone: every attempt fails transiently, so the
    // message is retried until SQS dead-letters it.
    let app = spawn_app().await;
    app.sqs
        .delete_queue()
        .queue_url(&app.queues.results.url)
        .send()
        .await
        .unwrap();
    let id = app
        .post_image(
            "alice",
            "image/png",
            &encode_rgb(&bands(50, 50, &[RED]), ImageFormat::Png),
        )
        .await;
    let post = app.wait_until_final(&id, "alice").await;
    assert_eq!(post["status"], "failed", "{post}");
    assert_eq!(post["failure_reason"], GAVE_UP);
    eventually("the conversion queue to drain", async || {
        app.queue_depth(&app.queues.conversion.url).await == 0
    })
    .await;
}
