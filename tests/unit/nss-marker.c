/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for a hostile NSS module: installed in a --root fake tree as
 * libnss_rcimark.so.2 and named in its etc/nsswitch.conf, it only leaves
 * /rci-nss-module-loaded behind when something loads it. useradd --root
 * loads it from inside its chroot (so the file lands in the tree);
 * test-root-tree.sh proves apply refuses a tree someone else could have
 * put it in, and that plan and check never load or run anything from a tree.
 */
#include <fcntl.h>
#include <unistd.h>

__attribute__((constructor)) static void rci_nss_marker_loaded(void) {
        int fd = open("/rci-nss-module-loaded", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
                close(fd);
}
