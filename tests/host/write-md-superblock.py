#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write an md RAID version-1.2 member superblock (4 KiB into the device),
checksum included, as `mdadm --create --metadata=1.2` would. The host test
kernel has no md driver, so mdadm cannot make one there."""
import os
import struct
import sys
import time
import uuid

dev = sys.argv[1]
fd = os.open(dev, os.O_RDWR)
size = os.lseek(fd, 0, os.SEEK_END) // 512
max_dev = 2
sb = bytearray(256 + 2 * max_dev)
struct.pack_into("<IIII", sb, 0, 0xA92B4EFC, 1, 0, 0)        # magic, major_version, feature_map, pad
sb[16:32] = uuid.uuid4().bytes                                 # set_uuid
name = b"otherhost:data"
sb[32:32 + len(name)] = name                                   # set_name
now = int(time.time())
struct.pack_into("<QiIQ", sb, 64, now, 1, 0, size - 2048)      # ctime, level 1, layout, size
struct.pack_into("<II", sb, 88, 0, 2)                          # chunksize, raid_disks
struct.pack_into("<QQQQ", sb, 128, 2048, size - 2048, 8, 0)    # data_offset, data_size, super_offset, recovery
struct.pack_into("<II", sb, 160, 0, 0)                         # dev_number, cnt_corrected_read
sb[168:184] = uuid.uuid4().bytes                               # device_uuid
struct.pack_into("<QQQII", sb, 192, now, 1, 2**64 - 1, 0, max_dev)  # utime, events, resync, sb_csum, max_dev
struct.pack_into("<HH", sb, 256, 0, 1)                         # dev_roles
csum = sum(struct.unpack_from("<%dI" % (len(sb) // 4), sb))
csum = (csum & 0xFFFFFFFF) + (csum >> 32)
struct.pack_into("<I", sb, 216, csum & 0xFFFFFFFF)
os.pwrite(fd, bytes(sb), 4096)
os.fsync(fd)
os.close(fd)
