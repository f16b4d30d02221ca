#!/bin/sh
# with_zram_swap.sh CMD...: run CMD with a zram swap device (ZRAM_SIZE,
# default 256M) that this script sets up and always tears down. Exit 77 (CTest: skipped, with
# the reason printed) when not root or when zram is not available.
set -u
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root to set up a zram swap device" >&2
	exit 77
fi
[ -e /sys/class/zram-control/hot_add ] || modprobe zram num_devices=0 2>/dev/null
if [ ! -e /sys/class/zram-control/hot_add ]; then
	echo "SKIP: no zram support (modprobe zram failed)" >&2
	exit 77
fi
command -v mkswap >/dev/null && command -v swapon >/dev/null || {
	echo "SKIP: mkswap/swapon missing (util-linux)" >&2
	exit 77
}
n=$(cat /sys/class/zram-control/hot_add) || exit 1
dev=/dev/zram$n
cleanup() {
	swapoff "$dev" 2>/dev/null
	echo "$n" >/sys/class/zram-control/hot_remove 2>/dev/null
}
trap cleanup EXIT INT TERM
echo "${ZRAM_SIZE:-256M}" >"/sys/block/zram$n/disksize" || exit 1
mkswap "$dev" >/dev/null || exit 1
swapon -p 32767 "$dev" || { echo "SKIP: swapon $dev failed" >&2; exit 77; }
"$@"
