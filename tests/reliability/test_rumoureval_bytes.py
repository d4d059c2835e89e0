"""RumourEval posts that are not UTF-8 text: the file, line and byte offset of the first bad byte."""

from __future__ import annotations

import gzip

import pytest

from lpm.data.rumoureval import load_rumoureval
from lpm.errors import DataFormatError

HEADER = b"thread_id,veracity,post_id,parent_id,depth,time_utc_snowflake,stance,delay_min\n"
ROW = b"1000,true,1000,,0,1400000000.0,support,0.0\n"


@pytest.mark.parametrize("content, line, offset", [
    (HEADER + ROW + b"1000,true,1001,1000,1,1400000060.0,comm\xe9nt,1.0\n", 3, len(HEADER + ROW) + 39),
    (HEADER + b"1000,tru\xff,1000,,0,1400000000.0,support,0.0\n", 2, len(HEADER) + 8),
    (b"\xef\xbb\xbf" + HEADER + ROW + b"\x80\n", 3, 3 + len(HEADER + ROW)),  # offsets count the BOM
])
def test_invalid_utf8_names_file_line_and_byte_offset(tmp_path, content, line, offset):
    path = tmp_path / "posts.csv"
    path.write_bytes(content)
    with pytest.raises(DataFormatError) as info:
        load_rumoureval(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: Expected UTF-8 text"), message
    assert f"byte offset {offset}" in message and f"0x{content[offset]:02x}" in message


@pytest.mark.parametrize("content", [gzip.compress(HEADER + ROW), b"PAR1\x15\x04\x15\x00" + bytes(range(256)),
                                     HEADER.decode().encode("utf-16")],
                         ids=["gzip", "parquet", "utf-16"])
def test_a_binary_file_is_named_binary(tmp_path, content):
    path = tmp_path / "posts.csv"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=r"Expected a UTF-8 CSV text file \(got a binary or UTF-16 file") as info:
        load_rumoureval(path)
    assert str(path) in str(info.value)


def test_an_unterminated_quote_is_a_format_error(tmp_path):
    path = tmp_path / "posts.csv"
    path.write_bytes(HEADER + ROW + b'1000,true,"1001,1000,1,1400000060.0,comment,1.0\n' + b"x" * 200_000)
    with pytest.raises(DataFormatError, match=rf"{path}, line \d+: Expected a well-formed CSV record"):
        load_rumoureval(path)


def test_valid_file_still_loads(tmp_path):
    path = tmp_path / "posts.csv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER + ROW + b"1000,true,1001,1000,1,1400000060.0,comment,1.0\r\n")
    posts = load_rumoureval(path)
    assert posts.post_id.tolist() == [1000, 1001] and posts.stance.tolist() == [0, 3]
