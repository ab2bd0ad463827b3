#!/bin/sh
# tests/cli/photos.sh — packdata on folders of JPEG and PNG photos, as a
# user runs it: a mixed folder packs; every bad JPEG input (truncated,
# corrupt, a .jpg holding HTML, over --max-pixels, zero-sized, 12-bit, an
# unreadable entry) and every bad photo flag gets one line on stderr naming
# the file or flag, a non-zero exit (1, or 2 for usage), and nothing left in
# the output's parent directory. The JPEGs are two small files written by
# libjpeg (base64 below) and variants of them made with plain python3.
# Prints cmocka-style result lines.
#   tests/cli/photos.sh BUILD_DIR
set -u
BUILD=${1:-build}
PACKDATA="$BUILD/packdata"
PACKINFO="$BUILD/packinfo"
T=$(mktemp -d /tmp/st-photos-XXXXXX)
trap 'rm -rf "$T"' EXIT
OUTDIR="$T/outdir" # the output's parent: must stay empty after a failure
mkdir -p "$OUTDIR"
pass=0 fail=0 failed_names=""

ok() { echo "[       OK ] $1"; pass=$((pass + 1)); }
bad() { echo "[  FAILED  ] $1: $2"; fail=$((fail + 1)); failed_names="$failed_names $1"; }

# expect_fail NAME RC WANT_IN_MESSAGE SRC [packdata options]
expect_fail() {
    name=$1 want_rc=$2 want=$3 src=$4; shift 4
    echo "[ RUN      ] $name"
    timeout 60 "$PACKDATA" "$src" -o "$OUTDIR/pack" -q "$@" >"$T/stdout" 2>"$T/stderr"
    rc=$?
    lines=$(wc -l <"$T/stderr")
    if [ $rc -ne "$want_rc" ]; then bad "$name" "exit $rc, want $want_rc: $(cat "$T/stderr")"; return; fi
    if [ "$lines" -ne 1 ]; then bad "$name" "stderr has $lines lines: $(cat "$T/stderr")"; return; fi
    if ! grep -qF -- "$want" "$T/stderr"; then bad "$name" "message lacks '$want': $(cat "$T/stderr")"; return; fi
    if [ -n "$(ls -A "$OUTDIR")" ]; then bad "$name" "left in the output's parent: $(ls -A "$OUTDIR")"; return; fi
    echo "    $(cat "$T/stderr")"
    ok "$name"
}

# ---- fixtures --------------------------------------------------------------
python3 - "$T" <<'PY'
import base64, os, struct, sys, zlib
T = sys.argv[1]
# 32x24 YCbCr 4:2:0 baseline q75, and 16x24 gray progressive q75 (libjpeg)
A = base64.b64decode('''
    /9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRof
    Hh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgNDRgyIRwh
    MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjL/wAAR
    CAAYACADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAA
    AgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkK
    FhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWG
    h4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl
    5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREA
    AgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYk
    NOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOE
    hYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk
    5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDgYnDLU8URZhWfo4a8uY4AwBY9T2713B0K
    OG286J2IXG4P78cVU8NbUwqVOhBpcZVhmu206QBRXM28PlgGtS2nKkDNc1SPNoedUj1PINI3
    xzI6nDKQQfevQ7TUp7m3SKQqFHXaMbvrRRXv1YrlOmr8RorgrxUkKnfRRXlci5jGq/dP/9k=
''')
B = base64.b64decode('''
    /9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRof
    Hh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wgALCAAYABABAREA/8QAFwAB
    AAMAAAAAAAAAAAAAAAAABQMEBv/aAAgBAQAAAAHP2IUhn//EABkQAAMBAQEAAAAAAAAAAAAA
    AAABAgMEE//aAAgBAQABBQJEI549FnJz00Zn/8QAFxAAAwEAAAAAAAAAAAAAAAAAARARIf/a
    AAgBAQAGPwJWrCv/xAAXEAEBAQEAAAAAAAAAAAAAAAABABEh/9oACAEBAAE/IVt1lXhaweID
    Pl//2gAIAQEAAAAQQ//EABcQAQEBAQAAAAAAAAAAAAAAAAERAKH/2gAIAQEAAT8QnJkTiwYY
    CWs5iAzV9QUHFO//2Q==
''')
def png(path, w, h):
    raw = b''.join(b'\x00' + bytes(((x * 9 + y * 5) & 255) for x in range(w)) for y in range(h))
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
def exif(jpg, orientation):
    tiff = b'MM\x00\x2a\x00\x00\x00\x08\x00\x01' + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0) + b'\x00' * 4
    app1 = b'Exif\x00\x00' + tiff
    return jpg[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + jpg[2:]
def sof(jpg):
    return jpg.index(b'\xff\xc0') if b'\xff\xc0' in jpg else jpg.index(b'\xff\xc2')
def patched(jpg, at, data):
    b = bytearray(jpg); b[at:at + len(data)] = data; return bytes(b)
def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'wb').write(data)
def tree(name, extra):
    put(f'{T}/{name}/cat/a.jpg', A)
    put(f'{T}/{name}/dog/b.jpg', exif(A, 3))
    for rel, data in extra.items(): put(f'{T}/{name}/{rel}', data)
# a good mixed folder: JPEG (one with EXIF), gray JPEG, PNG, one size
tree('good', {'dog/c.JPEG': A})
png(f'{T}/good/cat/d.png', 32, 24)
# mixed sizes: fine with --resize
tree('sizes', {'dog/gray.jpg': B})
# train/ alone: a split holding the class folders
tree('trainonly/train', {})
png(f'{T}/sizes/cat/d.png', 9, 5)
s = sof(A)
scan = A.index(b'\xff\xda')
tree('truncated', {'dog/cut.jpg': A[:len(A) * 9 // 10]})
tree('corrupt', {'dog/bad.jpg': patched(A, scan + 40, b'\xff\xc4')})
tree('html', {'dog/page.jpg': b'<html><body>404</body></html>\n'})
tree('bomb', {'dog/huge.jpg': patched(A, s + 5, struct.pack('>HH', 20000, 20000))})
tree('zero', {'dog/zero.jpg': patched(A, s + 5, struct.pack('>H', 0))})
tree('twelve', {'dog/deep.jpg': patched(A, s + 4, b'\x0c')})
tree('dangling', {})
os.symlink('/nonexistent/gone.jpg', f'{T}/dangling/dog/gone.jpg')
tree('fifo', {})
os.mkfifo(f'{T}/fifo/dog/pipe.jpg')
PY

# ---- what packs -------------------------------------------------------------
echo "[ RUN      ] mixed_folder_packs"
if "$PACKDATA" "$T/good" -o "$OUTDIR/pack" -q >"$T/stdout" 2>"$T/stderr" &&
   "$PACKINFO" --verify "$OUTDIR/pack" >/dev/null 2>>"$T/stderr" &&
   grep -q "shape 24x32x3" "$T/stdout"; then ok mixed_folder_packs
else bad mixed_folder_packs "$(cat "$T/stdout" "$T/stderr")"; fi
rm -rf "$OUTDIR/pack"

echo "[ RUN      ] train_folder_alone_is_a_split"
if "$PACKDATA" "$T/trainonly" -o "$OUTDIR/pack" -q >"$T/stdout" 2>"$T/stderr" &&
   "$PACKINFO" "$OUTDIR/pack" 2>>"$T/stderr" | grep -q "^classes  2: 0=cat, 1=dog"; then
    ok train_folder_alone_is_a_split
else bad train_folder_alone_is_a_split "$(cat "$T/stdout" "$T/stderr")"; fi
rm -rf "$OUTDIR/pack"

echo "[ RUN      ] mixed_sizes_resize"
if "$PACKDATA" "$T/sizes" -o "$OUTDIR/pack" -q --resize 12x8 >"$T/stdout" 2>"$T/stderr" &&
   grep -q "shape 8x12x3" "$T/stdout"; then ok mixed_sizes_resize
else bad mixed_sizes_resize "$(cat "$T/stdout" "$T/stderr")"; fi
rm -rf "$OUTDIR/pack"

# ---- a variable-size pack through loadbench and streamtrain ----------------
STREAMTRAIN="$BUILD/streamtrain"
LOADBENCH="$BUILD/loadbench"
"$PACKDATA" "$T/sizes" -o "$T/varpack" -q >/dev/null 2>&1
# expect_tool NAME RC WANT_IN_OUTPUT TOOL [options]
expect_tool() {
    name=$1 want_rc=$2 want=$3; shift 3
    echo "[ RUN      ] $name"
    "$@" >"$T/out" 2>&1
    rc=$?
    if [ $rc -eq "$want_rc" ] && grep -qF -- "$want" "$T/out"; then ok "$name"
    else bad "$name" "exit $rc, wanted $want_rc and '$want': $(tail -3 "$T/out")"; fi
}
expect_tool loadbench_needs_size 1 "images are of different sizes" \
    "$LOADBENCH" --data "$T/varpack" --threads 1 --epochs 1 --batch 2
expect_tool loadbench_image_size 0 "loadbench threads=2 samples_per_s=" \
    "$LOADBENCH" --data "$T/varpack" --threads 1,2 --epochs 2 --batch 2 --image-size 16
expect_tool loadbench_center_crop 0 "transform 'center-crop 16' to 16x16" \
    "$LOADBENCH" --data "$T/varpack" --threads 2 --epochs 1 --batch 2 --transform "center-crop 16"
expect_tool loadbench_bad_transform 2 "size 0: expected 1..4096" \
    "$LOADBENCH" --data "$T/varpack" --transform "center-crop 0"
expect_tool streamtrain_needs_size 1 "holds images of different sizes (up to" \
    "$STREAMTRAIN" --data "$T/varpack" --epochs 1 -q
expect_tool streamtrain_image_size 0 "final epochs=" \
    "$STREAMTRAIN" --data "$T/varpack" --image-size 16 --hidden 8 --batch 2 \
    --epochs 1 --eval-split none --threads 1 -q
expect_tool streamtrain_transforms_line 0 "transforms 'resize 12x10' (train), 'resize 12x10 flip' (eval)" \
    "$STREAMTRAIN" --data "$T/varpack" --train-transform "resize 12x10" \
    --eval-transform "resize 12x10 flip" --hidden 8 --batch 2 --epochs 1 --threads 1 --plan
expect_tool streamtrain_eval_size_differs 1 "the evaluation transform gives 8x8 images but training gives 16x16" \
    "$STREAMTRAIN" --data "$T/varpack" --image-size 16 --eval-transform "center-crop 8" --epochs 1 -q
expect_tool streamtrain_bad_transform 2 "transform 'spin 3': 'spin': expected random-resized-crop, center-crop" \
    "$STREAMTRAIN" --data "$T/varpack" --train-transform "spin 3"

# ---- bad input --------------------------------------------------------------
expect_fail truncated_jpeg 1 "truncated/dog/cut.jpg: Premature end of JPEG file" "$T/truncated"
expect_fail corrupt_jpeg 1 "corrupt/dog/bad.jpg: Corrupt JPEG data" "$T/corrupt"
expect_fail jpg_is_html 1 "html/dog/page.jpg: not a JPEG or PNG file (starts with 3c 68 74 6d)" "$T/html"
expect_fail over_max_pixels 1 "bomb/dog/huge.jpg: 20000x20000 = 400000000 pixels is over --max-pixels 89478485 (a decompression bomb?)" "$T/bomb"
expect_fail max_pixels_flag 1 "good/cat/a.jpg: 32x24 = 768 pixels is over --max-pixels 700" "$T/good" --max-pixels 700
expect_fail zero_sized 1 "zero/dog/zero.jpg: zero-sized JPEG" "$T/zero"
expect_fail twelve_bit 1 "twelve/dog/deep.jpg: 12-bit JPEG" "$T/twelve"
expect_fail dangling_symlink 1 "dangling/dog/gone.jpg: cannot open" "$T/dangling"
expect_fail fifo_entry 1 "fifo/dog/pipe.jpg: cannot read: is a FIFO" "$T/fifo"
expect_fail max_side_zero 2 "--max-side 0: expected 1..16384" "$T/good" --max-side 0
expect_fail max_side_text 2 "--max-side big: expected 1..16384" "$T/good" --max-side big
expect_fail max_pixels_negative 2 "--max-pixels -1: expected a pixel count" "$T/good" --max-pixels -1
expect_fail quality_zero 2 "--quality 0: expected 1..100" "$T/good" --quality 0
expect_fail quality_over 2 "--quality 101: expected 1..100" "$T/good" --quality 101
expect_fail max_side_and_resize 2 "--max-side and --resize do not combine" "$T/good" --max-side 16 --resize 8x8

echo "[==========] $((pass + fail)) test(s) run."
echo "[  PASSED  ] $pass test(s)."
if [ $fail -gt 0 ]; then
    echo "[  FAILED  ] $fail test(s), listed below:"
    for n in $failed_names; do echo "[  FAILED  ] $n"; done
    exit 1
fi
exit 0
