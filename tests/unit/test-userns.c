/* SPDX-License-Identifier: MIT */
#include "tests.h"
#include "util/error.h"
#include "util/userns.h"

/*
 * The map a user namespace of the CI user gets (util/userns.h): 0 -> the
 * user, then every subordinate range. The kernel refuses overlapping
 * extents and a map of more than 340 lines, so what we hand it must never
 * be either, whatever /etc/subuid holds.
 */

#define EXTENT(m, i, in, out, n)                                \
        do {                                                    \
                ASSERT_EQ((m).extents[i].inside, (in));         \
                ASSERT_EQ((m).extents[i].outside, (out));       \
                ASSERT_EQ((m).extents[i].count, (n));           \
        } while (0)

TEST(userns_map_one_range_is_the_daemons_map) {
        const SubIdRange r[] = { { 100000, 65536 } };
        IdMap m;
        uint32_t max;

        ASSERT_OK(userns_map_build(1000, r, 1, &m, &max));
        ASSERT_EQ(m.n, 2);
        EXTENT(m, 0, 0, 1000, 1);
        EXTENT(m, 1, 1, 100000, 65536);
        ASSERT_EQ(max, 65536);
}

TEST(userns_map_maps_every_range_one_after_the_other) {
        /* Two separate ranges: container IDs 1..65536 are the first, 65537.. the second (sorted). */
        const SubIdRange r[] = { { 700000, 65536 }, { 300000, 65536 } };
        IdMap m;
        uint32_t max;

        ASSERT_OK(userns_map_build(1000, r, 2, &m, &max));
        ASSERT_EQ(m.n, 3);
        EXTENT(m, 0, 0, 1000, 1);
        EXTENT(m, 1, 1, 300000, 65536);
        EXTENT(m, 2, 65537, 700000, 65536);
        ASSERT_EQ(max, 131072);
}

TEST(userns_map_merges_adjacent_and_overlapping_ranges) {
        /* Adjacent lines (newuidmap accepts one request across them), a duplicate, an overlap. */
        const SubIdRange r[] = { { 165536, 65536 }, { 100000, 65536 }, { 100000, 65536 }, { 200000, 100000 } };
        IdMap m;
        uint32_t max;

        ASSERT_OK(userns_map_build(1000, r, 4, &m, &max));
        ASSERT_EQ(m.n, 2);
        EXTENT(m, 1, 1, 100000, 200000);
        ASSERT_EQ(max, 200000);
}

TEST(userns_map_never_maps_the_user_twice) {
        /* A range holding the user's own ID: that ID is 0 already; the kernel would refuse it twice. */
        const SubIdRange r[] = { { 1000, 10 } };
        IdMap m;
        uint32_t max;

        ASSERT_OK(userns_map_build(1003, r, 1, &m, &max));
        ASSERT_EQ(m.n, 3);
        EXTENT(m, 0, 0, 1003, 1);
        EXTENT(m, 1, 1, 1000, 3);
        EXTENT(m, 2, 4, 1004, 6);
        ASSERT_EQ(max, 9);
}

TEST(userns_map_without_ranges_is_the_user_alone) {
        const SubIdRange r[] = { { 500000, 0 } };
        IdMap m;
        uint32_t max = 7;

        ASSERT_OK(userns_map_build(1000, NULL, 0, &m, &max));
        ASSERT_EQ(m.n, 1);
        ASSERT_EQ(max, 0);
        ASSERT_OK(userns_map_build(1000, r, 1, &m, &max));
        ASSERT_EQ(m.n, 1);
}

TEST(userns_map_stops_at_the_last_id) {
        /* (uid_t) -1 is no ID: a range running past 4294967294 is cut there. */
        const SubIdRange r[] = { { 4294901760ULL, 1ULL << 20 } };
        IdMap m;
        uint32_t max;

        ASSERT_OK(userns_map_build(1000, r, 1, &m, &max));
        ASSERT_EQ(m.n, 2);
        EXTENT(m, 1, 1, 4294901760U, 65535);
}

TEST(userns_map_refuses_more_extents_than_the_kernel_takes) {
        SubIdRange r[IDMAP_EXTENTS_MAX];
        IdMap m;

        /* 339 separate ranges and the user: 340 lines, the limit. */
        for (size_t i = 0; i < IDMAP_EXTENTS_MAX; i++)
                r[i] = (SubIdRange) { 100000 + 200 * i, 100 };
        ASSERT_OK(userns_map_build(1000, r, IDMAP_EXTENTS_MAX - 1, &m, NULL));
        ASSERT_EQ(m.n, IDMAP_EXTENTS_MAX);
        ASSERT_EQ(userns_map_build(1000, r, IDMAP_EXTENTS_MAX, &m, NULL), -E2BIG);
}
