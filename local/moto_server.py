"""moto's server, as `moto_server`, with one race of moto 5.1.22 closed.

A key's ETag is computed on first use by seeking its buffer to 0 and
reading it in 16 MiB blocks, without the key's lock. An UploadPart answer
and a ListParts arriving while the part is new compute it at once: the
two share the buffer's position, both can hash the wrong bytes, and the
wrong ETag is cached for good. Locally that made the CLI send a held part
again and can make a browser's CompleteMultipartUpload fail with
InvalidPart; S3 has no such race. Here the ETag is computed under the
key's own lock, the one moto's `value` already takes.

`tests/integration/uploads.rs`
(`a_parts_etag_is_its_md5_while_the_upload_is_being_listed`) fails
without this.
"""

import sys

from moto.s3.models import FakeKey
from moto.server import main

_etag = FakeKey.etag.fget


def _locked_etag(key):
    with key.lock:
        return _etag(key)


FakeKey.etag = property(_locked_etag)

if __name__ == "__main__":
    sys.exit(main())
