#!/bin/sh
# tests/cli/packdata.sh — packdata and packinfo as a user runs them: every
# bad input gets one line on stderr naming the file, a non-zero exit and
# no output left behind; kill -9 never leaves a valid pack; --verify names
# split, shard and record. Prints cmocka-style result lines.
#   tests/cli/packdata.sh BUILD_DIR
set -u
BUILD=${1:-build}
PACKDATA="$BUILD/packdata"
PACKINFO="$BUILD/packinfo"
T=$(mktemp -d /tmp/st-cli-XXXXXX)
trap 'umount "$T/small" 2>/dev/null; rm -rf "$T"' EXIT
pass=0 fail=0 skip=0 failed_names=""

ok() { echo "[       OK ] $1"; pass=$((pass + 1)); }
bad() { echo "[  FAILED  ] $1: $2"; fail=$((fail + 1)); failed_names="$failed_names $1"; }

# expect_error NAME WANT_IN_MESSAGE SRC [packdata options]
expect_error() {
    name=$1 want=$2 src=$3; shift 3
    echo "[ RUN      ] $name"
    rm -rf "$T/out"
    # timeout: a FIFO among the inputs once made packdata block forever
    timeout 60 "$PACKDATA" "$src" -o "$T/out" -q "$@" >"$T/stdout" 2>"$T/stderr"
    rc=$?
    lines=$(wc -l <"$T/stderr")
    if [ $rc -eq 0 ]; then bad "$name" "exit 0"; return; fi
    if [ $rc -ne "$want_rc" ]; then bad "$name" "exit $rc, want $want_rc"; return; fi
    if [ "$lines" -ne 1 ]; then bad "$name" "stderr has $lines lines: $(cat "$T/stderr")"; return; fi
    if ! grep -qF -- "$want" "$T/stderr"; then bad "$name" "message lacks '$want': $(cat "$T/stderr")"; return; fi
    if [ -e "$T/out" ] || ls -A "$T" | grep -q '^\.out\.tmp-'; then bad "$name" "output left behind"; return; fi
    echo "    $(cat "$T/stderr")"
    ok "$name"
}

want_rc=1
# expect_usage: expect_error for a usage error (exit 2)
expect_usage() {
    want_rc=2
    expect_error "$@"
    want_rc=1
}

# ---- fixtures ----------------------------------------------------------
python3 - "$T" <<'PY'
import os, struct, sys, zlib, gzip
T = sys.argv[1]
def idx(path, magic, dims, payload):
    with open(path, 'wb') as f:
        f.write(struct.pack('>I', magic) + b''.join(struct.pack('>I', d) for d in dims) + payload)
def png(path, w, h, gray=True):
    raw = b''.join(b'\x00' + bytes(((x * 9 + y * 5) & 255) for x in range(w)) for y in range(h))
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
n = 200
img = bytes((i * 7) & 255 for i in range(n * 28 * 28))
lab = bytes(i % 10 for i in range(n))
os.makedirs(f'{T}/good')
idx(f'{T}/good/train-images-idx3-ubyte', 0x803, [n, 28, 28], img)
idx(f'{T}/good/train-labels-idx1-ubyte', 0x801, [n], lab)
# gzip: truncated and corrupt
os.makedirs(f'{T}/gztrunc'); os.makedirs(f'{T}/gzcorrupt')
data = gzip.compress(struct.pack('>IIII', 0x803, n, 28, 28) + img)
open(f'{T}/gztrunc/train-images-idx3-ubyte.gz', 'wb').write(data[:len(data) // 2])
bad = bytearray(data); bad[len(bad) // 2] ^= 0xff; bad[len(bad) // 2 + 1] ^= 0xff
open(f'{T}/gzcorrupt/train-images-idx3-ubyte.gz', 'wb').write(bytes(bad))
for d in ('gztrunc', 'gzcorrupt'):
    open(f'{T}/{d}/train-labels-idx1-ubyte.gz', 'wb').write(gzip.compress(struct.pack('>II', 0x801, n) + lab))
# a plain images file beside its .gz twin (gunzip -k), and labels the same
os.makedirs(f'{T}/twin'); os.makedirs(f'{T}/twinlab')
for d in ('twin', 'twinlab'):
    idx(f'{T}/{d}/train-images-idx3-ubyte', 0x803, [n, 28, 28], img)
    open(f'{T}/{d}/train-labels-idx1-ubyte.gz', 'wb').write(gzip.compress(struct.pack('>II', 0x801, n) + lab))
open(f'{T}/twin/train-images-idx3-ubyte.gz', 'wb').write(gzip.compress(struct.pack('>IIII', 0x803, n, 28, 28) + img))
idx(f'{T}/twinlab/train-labels-idx1-ubyte', 0x801, [n], lab)
# enough samples for > 1000 shards of 4K
m = 5200
os.makedirs(f'{T}/many')
idx(f'{T}/many/train-images-idx3-ubyte', 0x803, [m, 28, 28], bytes((i * 3) & 255 for i in range(m * 784)))
idx(f'{T}/many/train-labels-idx1-ubyte', 0x801, [m], bytes(i % 10 for i in range(m)))
os.makedirs(f'{T}/oneclass/only'); png(f'{T}/oneclass/only/0.png', 8, 6); png(f'{T}/oneclass/only/1.png', 8, 6)
# IDX labels without images: not a source of any kind
os.makedirs(f'{T}/labelsonly'); idx(f'{T}/labelsonly/train-labels-idx1-ubyte', 0x801, [n], lab)
# a FIFO named like an IDX images file
os.makedirs(f'{T}/fifo'); os.mkfifo(f'{T}/fifo/train-images-idx3-ubyte')
idx(f'{T}/fifo/train-labels-idx1-ubyte', 0x801, [n], lab)
os.makedirs(f'{T}/magic'); os.makedirs(f'{T}/counts'); os.makedirs(f'{T}/mismatch')
idx(f'{T}/magic/train-images-idx3-ubyte', 0x804, [n, 28, 28], img)
idx(f'{T}/magic/train-labels-idx1-ubyte', 0x801, [n], lab)
idx(f'{T}/counts/train-images-idx3-ubyte', 0x803, [n + 5, 28, 28], img)
idx(f'{T}/counts/train-labels-idx1-ubyte', 0x801, [n], lab)
idx(f'{T}/mismatch/train-images-idx3-ubyte', 0x803, [n, 28, 28], img)
idx(f'{T}/mismatch/train-labels-idx1-ubyte', 0x801, [n - 1], lab[:-1])
# folders
for c in ('cat', 'dog'):
    os.makedirs(f'{T}/folder/{c}')
    for i in range(5): png(f'{T}/folder/{c}/{i}.png', 8, 6)
os.makedirs(f'{T}/notpng/a'); png(f'{T}/notpng/a/0.png', 8, 6)
open(f'{T}/notpng/a/readme.png', 'w').write('hello, not a png\n')
os.makedirs(f'{T}/corruptpng/a'); png(f'{T}/corruptpng/a/0.png', 8, 6)
png(f'{T}/corruptpng/a/1.png', 8, 6)
b = bytearray(open(f'{T}/corruptpng/a/1.png', 'rb').read()); b[45] ^= 0xff; b[46] ^= 0xff
open(f'{T}/corruptpng/a/1.png', 'wb').write(bytes(b))
os.makedirs(f'{T}/emptyfolder')
os.makedirs(f'{T}/emptyclass/a'); os.makedirs(f'{T}/emptyclass/b'); png(f'{T}/emptyclass/a/0.png', 8, 6)
os.makedirs(f'{T}/utf8/a'.encode() ); png(f'{T}/utf8/a/0.png', 8, 6)
os.makedirs(f'{T}/utf8/'.encode() + b'\xff\xfe'); png(f'{T}/utf8/'.encode() + b'\xff\xfe/0.png', 8, 6)
os.makedirs(f'{T}/sizes/a'); png(f'{T}/sizes/a/0.png', 8, 6); png(f'{T}/sizes/a/1.png', 9, 6)
os.makedirs(f'{T}/unreadable/a'); png(f'{T}/unreadable/a/0.png', 8, 6)
os.symlink('/nonexistent/gone.png', f'{T}/unreadable/a/1.png')
PY

# ---- bad input ------------------------------------------------------------
expect_error truncated_gz "train-images-idx3-ubyte.gz" "$T/gztrunc"
expect_error corrupt_gz "train-images-idx3-ubyte.gz" "$T/gzcorrupt"
expect_error idx_plain_and_gz "both train-images-idx3-ubyte" "$T/twin"
expect_error idx_labels_plain_and_gz "ambiguous labels" "$T/twinlab"
expect_error idx_fifo "train-images-idx3-ubyte: cannot read: is a FIFO" "$T/fifo"
expect_error not_a_source "not a recognised source: no IDX images file" "$T/labelsonly"
expect_error idx_bad_magic "train-images-idx3-ubyte" "$T/magic"
expect_error idx_counts_vs_size "train-images-idx3-ubyte" "$T/counts"
expect_error idx_label_count "train-labels-idx1-ubyte" "$T/mismatch"
expect_error folder_not_png "readme.png" "$T/notpng"
expect_error folder_corrupt_png "1.png" "$T/corruptpng"
expect_error folder_empty "emptyfolder" "$T/emptyfolder"
expect_error folder_empty_class "emptyclass/b" "$T/emptyclass"
expect_error folder_bad_utf8 "UTF-8" "$T/utf8"
expect_error unreadable_file "1.png" "$T/unreadable"
expect_error missing_source "/nonexistent/src" "/nonexistent/src"
expect_usage bad_option "--level" "$T/good" --level 99
expect_usage empty_output "-o: empty path" "$T/good" -o ""
expect_usage resize_over_limit "each side 1..16384" "$T/folder" --resize 16385x8
expect_usage dict_size_too_small "256..16M" "$T/good" --dict-size 100

echo "[ RUN      ] out_inside_src"
"$PACKDATA" "$T/folder" -o "$T/folder/packed" -q >/dev/null 2>"$T/stderr"; rc=$?
if [ $rc -ne 2 ]; then bad out_inside_src "exit $rc, want 2: $(cat "$T/stderr")"
elif [ -e "$T/folder/packed" ] || ls -A "$T/folder" | grep -q '^\.packed\.tmp-'; then bad out_inside_src "output left in SRC"
elif ! grep -q "OUT is inside SRC" "$T/stderr"; then bad out_inside_src "$(cat "$T/stderr")"
else echo "    $(cat "$T/stderr")"; ok out_inside_src; fi

# expect_warning NAME WANT SRC [options]: packs (exit 0) with WANT on stderr
expect_warning() {
    name=$1 want=$2 src=$3; shift 3
    echo "[ RUN      ] $name"
    rm -rf "$T/out"
    "$PACKDATA" "$src" -o "$T/out" -q "$@" >/dev/null 2>"$T/stderr"; rc=$?
    if [ $rc -ne 0 ]; then bad "$name" "exit $rc: $(cat "$T/stderr")"
    elif ! grep -q -- "$want" "$T/stderr"; then bad "$name" "no warning: $(cat "$T/stderr")"
    else echo "    $(cat "$T/stderr")"; ok "$name"; fi
}
expect_warning warns_one_class "warning: $T/out has 1 class; streamtrain needs at least 2" "$T/oneclass"
expect_warning warns_many_shards "warning: $T/out has 1" "$T/many" --codec raw --shard-size 4K
echo "[ RUN      ] no_warning_normally"
rm -rf "$T/out"
if "$PACKDATA" "$T/good" -o "$T/out" -q >/dev/null 2>"$T/stderr" && [ ! -s "$T/stderr" ]; then ok no_warning_normally
else bad no_warning_normally "$(cat "$T/stderr")"; fi

# images of several sizes make a variable-shape pack, each at its own
# size; packinfo shows the spread of sizes from the index
echo "[ RUN      ] folder_sizes_variable"
rm -rf "$T/out"
if "$PACKDATA" "$T/sizes" -o "$T/out" -q >/dev/null 2>"$T/stderr" &&
   "$PACKINFO" --verify "$T/out" >"$T/stdout" 2>&1 &&
   grep -q "^shape    variable" "$T/stdout" && grep -q "^sizes    train" "$T/stdout"; then
    ok folder_sizes_variable
else bad folder_sizes_variable "$(cat "$T/stderr" "$T/stdout")"; fi

echo "[ RUN      ] folder_resize_ok"
rm -rf "$T/out"
if "$PACKDATA" "$T/sizes" -o "$T/out" -q --resize 8x6 >/dev/null 2>"$T/stderr" &&
   "$PACKINFO" --verify "$T/out" >/dev/null 2>&1; then ok folder_resize_ok
else bad folder_resize_ok "$(cat "$T/stderr")"; fi

echo "[ RUN      ] refuses_existing_output"
rm -rf "$T/out"
"$PACKDATA" "$T/good" -o "$T/out" -q >/dev/null 2>&1
if "$PACKDATA" "$T/good" -o "$T/out" -q >/dev/null 2>"$T/stderr"; then bad refuses_existing_output "exit 0"
elif ! grep -q -- "--force" "$T/stderr"; then bad refuses_existing_output "$(cat "$T/stderr")"
elif ! "$PACKDATA" "$T/good" -o "$T/out" -q --force >/dev/null 2>&1; then bad refuses_existing_output "--force failed"
else ok refuses_existing_output; fi

echo "[ RUN      ] force_refuses_symlink_out"
rm -rf "$T/real" "$T/link"
"$PACKDATA" "$T/good" -o "$T/real" -q >/dev/null 2>&1
ln -s real "$T/link"
sum_before=$(cat "$T/real"/* | cksum)
"$PACKDATA" "$T/folder" -o "$T/link" -q --force >/dev/null 2>"$T/stderr"; rc=$?
if [ $rc -ne 1 ]; then bad force_refuses_symlink_out "exit $rc, want 1"
elif [ "$(wc -l <"$T/stderr")" -ne 1 ] || ! grep -q "symbolic link" "$T/stderr"; then bad force_refuses_symlink_out "$(cat "$T/stderr")"
elif [ "$(cat "$T/real"/* | cksum)" != "$sum_before" ] || ! [ -L "$T/link" ]; then bad force_refuses_symlink_out "the pack behind the link changed"
elif ls -A "$T" | grep -q '^\.link\.tmp-'; then bad force_refuses_symlink_out "temporary directory left behind"
elif ! "$PACKINFO" --verify "$T/real" >/dev/null 2>&1; then bad force_refuses_symlink_out "the pack no longer verifies"
else echo "    $(cat "$T/stderr")"; ok force_refuses_symlink_out; fi

echo "[ RUN      ] force_refuses_non_pack"
rm -rf "$T/notes"
mkdir "$T/notes"
echo "my notes" >"$T/notes/MANIFEST"
echo "precious" >"$T/notes/data.txt"
"$PACKDATA" "$T/good" -o "$T/notes" -q --force >/dev/null 2>"$T/stderr"; rc=$?
if [ $rc -ne 1 ]; then bad force_refuses_non_pack "exit $rc, want 1"
elif [ "$(wc -l <"$T/stderr")" -ne 1 ] || ! grep -q "holds data.txt, which is not part of a pack" "$T/stderr"; then bad force_refuses_non_pack "$(cat "$T/stderr")"
elif [ "$(cat "$T/notes/data.txt")" != precious ] || [ "$(cat "$T/notes/MANIFEST")" != "my notes" ]; then bad force_refuses_non_pack "the user's files changed"
else
    echo "    $(cat "$T/stderr")"
    rm "$T/notes/data.txt"  # a lone MANIFEST without the pack magic is not a pack either
    "$PACKDATA" "$T/good" -o "$T/notes" -q --force >/dev/null 2>"$T/stderr"; rc=$?
    if [ $rc -ne 1 ] || [ "$(cat "$T/notes/MANIFEST")" != "my notes" ]; then bad force_refuses_non_pack "lone MANIFEST: exit $rc"
    elif ! grep -q "not a pack manifest" "$T/stderr"; then bad force_refuses_non_pack "$(cat "$T/stderr")"
    else echo "    $(cat "$T/stderr")"; ok force_refuses_non_pack; fi
fi

echo "[ RUN      ] disk_full"
mkdir -p "$T/small"
if mount -t tmpfs -o size=64k tmpfs "$T/small" 2>/dev/null; then
    "$PACKDATA" "$T/good" -o "$T/small/out" --codec raw -q >/dev/null 2>"$T/stderr"
    rc=$?
    left=$(ls -A "$T/small")
    umount "$T/small"
    if [ $rc -eq 0 ]; then bad disk_full "exit 0"
    elif [ -n "$left" ]; then bad disk_full "left: $left"
    elif ! grep -q "No space left" "$T/stderr"; then bad disk_full "$(cat "$T/stderr")"
    else echo "    $(cat "$T/stderr")"; ok disk_full; fi
else
    echo "[  SKIPPED ] disk_full: cannot mount a tmpfs here"; skip=$((skip + 1))
fi

echo "[ RUN      ] verify_names_record"
rm -rf "$T/out"
"$PACKDATA" "$T/good" -o "$T/out" -q --codec raw >/dev/null 2>&1
printf '\377' | dd of="$T/out/train-00000.shard" bs=1 seek=$((64 + 784 * 3 + 5)) conv=notrunc 2>/dev/null
if "$PACKINFO" --verify "$T/out" >/dev/null 2>"$T/stderr"; then bad verify_names_record "exit 0"
elif ! grep -q "split train, shard train-00000.shard, record 3" "$T/stderr"; then bad verify_names_record "$(cat "$T/stderr")"
else echo "    $(cat "$T/stderr")"; ok verify_names_record; fi

echo "[ RUN      ] kill_9_leaves_no_pack"
FM=/usr/share/datasets/fashion-mnist
if [ -d "$FM" ]; then
    rm -rf "$T/fm"
    "$PACKDATA" "$FM" -o "$T/fm" -q --threads 1 --level 19 >/dev/null 2>&1 &
    pid=$!
    sleep 1.5
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    if [ -e "$T/fm" ] && "$PACKINFO" "$T/fm" >/dev/null 2>&1; then bad kill_9_leaves_no_pack "a valid pack appeared"
    elif [ -e "$T/fm" ]; then bad kill_9_leaves_no_pack "output directory exists"
    else
        # the next run sweeps the dead run's temporary directory
        "$PACKDATA" "$T/good" -o "$T/fm" -q >/dev/null 2>&1
        if ls -A "$T" | grep -q '^\.fm\.tmp-'; then bad kill_9_leaves_no_pack "stale temporary directory kept"
        else ok kill_9_leaves_no_pack; fi
    fi
else
    echo "[  SKIPPED ] kill_9_leaves_no_pack: $FM not installed"; skip=$((skip + 1))
fi

echo "[ RUN      ] ctrl_c_leaves_nothing"
if [ -d "$FM" ]; then
    rm -rf "$T/fm"
    "$PACKDATA" "$FM" -o "$T/fm" -q --threads 1 --level 19 --huffman-literals >/dev/null 2>"$T/stderr" &
    pid=$!
    sleep 1.5
    kill -INT $pid 2>/dev/null; wait $pid; rc=$?
    if [ $rc -ne 130 ]; then bad ctrl_c_leaves_nothing "exit $rc, want 130: $(cat "$T/stderr")"
    elif [ -e "$T/fm" ] || ls -A "$T" | grep -q '^\.fm\.tmp-'; then bad ctrl_c_leaves_nothing "output left behind"
    elif ! grep -q "interrupted; nothing was written" "$T/stderr"; then bad ctrl_c_leaves_nothing "$(cat "$T/stderr")"
    else echo "    $(cat "$T/stderr")"; ok ctrl_c_leaves_nothing; fi
else
    echo "[  SKIPPED ] ctrl_c_leaves_nothing: $FM not installed"; skip=$((skip + 1))
fi

echo "[ RUN      ] sigterm_exits_143"
if [ -d "$FM" ]; then
    rm -rf "$T/fm"
    "$PACKDATA" "$FM" -o "$T/fm" -q --threads 1 --level 19 >/dev/null 2>"$T/stderr" &
    pid=$!
    sleep 1.5
    kill -TERM $pid 2>/dev/null; wait $pid; rc=$?
    if [ $rc -ne 143 ]; then bad sigterm_exits_143 "exit $rc, want 143: $(cat "$T/stderr")"
    elif [ -e "$T/fm" ] || ls -A "$T" | grep -q '^\.fm\.tmp-'; then bad sigterm_exits_143 "output left behind"
    else ok sigterm_exits_143; fi
else
    echo "[  SKIPPED ] sigterm_exits_143: $FM not installed"; skip=$((skip + 1))
fi

echo "[ RUN      ] deterministic_threads"
rm -rf "$T/a" "$T/b"
"$PACKDATA" "$T/folder" -o "$T/a" -q --threads 1 >/dev/null 2>&1
"$PACKDATA" "$T/folder" -o "$T/b" -q --threads 4 >/dev/null 2>&1
if diff -r "$T/a" "$T/b" >/dev/null; then ok deterministic_threads
else bad deterministic_threads "packs differ"; fi

echo "[==========] $((pass + fail + skip)) test(s) run."
echo "[  PASSED  ] $pass test(s)."
[ $skip -gt 0 ] && echo "[  SKIPPED ] $skip test(s)."
if [ $fail -gt 0 ]; then
    echo "[  FAILED  ] $fail test(s), listed below:"
    for n in $failed_names; do echo "[  FAILED  ] $n"; done
    exit 1
fi
exit 0
