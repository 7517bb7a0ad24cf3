/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The network drivers "rootlesskit --help" lists for --net, as a list of
 * words: "--net value  network driver [host, pasta(experimental),
 * slirp4netns]" gives "host pasta slirp4netns". -ENOENT when the text has
 * no such list.
 */
int rootlesskit_net_drivers_parse(const char *help, char **ret);
