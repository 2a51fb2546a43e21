#!/usr/bin/env python3
"""Walks the whole feed through the API, 100 posts a page, and samples the
serving process's resident memory: what the per-container cache of
presigned image URLs (shared/src/objects.rs) costs over a walk of every
post. Run by scripts/bench-url-cache.

    feed_walk_rss.py API_URL TOKEN PID
"""
import json
import sys
import time
import urllib.parse
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def main():
    api, token, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start_rss = rss_kib(pid)
    peak, pages, posts, images = start_rss, 0, 0, 0
    samples = []
    cursor = None
    started = time.monotonic()
    while True:
        url = f"{api}/posts?limit=100"
        if cursor:
            url += "&cursor=" + urllib.parse.quote(cursor)
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req) as resp:
            page = json.load(resp)
        pages += 1
        posts += len(page["posts"])
        images += sum(1 for p in page["posts"] if p.get("image_url"))
        now = rss_kib(pid)
        peak = max(peak, now)
        if pages <= 120 and pages % 10 == 0:
            samples.append((images, now))
        cursor = page.get("next_cursor")
        if not cursor:
            break
    secs = time.monotonic() - started
    print(f"walked {posts} posts ({images} image URLs) in {pages} pages, {secs:.1f} s")
    print(f"RSS: {start_rss / 1024:.1f} MiB before, {peak / 1024:.1f} MiB peak, "
          f"{rss_kib(pid) / 1024:.1f} MiB after")
    print("RSS while the first pages filled the cache (image URLs -> MiB):")
    for n, kib in samples:
        print(f"  {n:>6} {kib / 1024:7.1f}")
    if len(samples) >= 2:
        (n0, k0), (n1, k1) = samples[0], samples[min(len(samples) - 1, 8)]
        if n1 > n0 and k1 > k0:
            print(f"~{(k1 - k0) * 1024 / (n1 - n0):.0f} bytes per cached URL "
                  f"(from {n0} to {n1} URLs)")


if __name__ == "__main__":
    main()
