/*
 * netswap_server.h - a real nbd-server on 127.0.0.1 for the netswap
 * scenario, run through scripts/nbd-serve.sh over a temporary export.
 * Nothing is installed here: when the server is missing, the caller is
 * told so (scripts/nbd-setup.sh installs it) and falls back to a file.
 */
#ifndef NOFAIL_SCENARIO_NETSWAP_SERVER_H
#define NOFAIL_SCENARIO_NETSWAP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

struct nbd_server {
	char script[512];              /* scripts/nbd-serve.sh */
	char dir[64];                  /* its temporary directory: export, config, pid file, log */
	char port[16];
	bool running;
};

/*
 * Starts nbd-server with an export of size_mib and the given name. true
 * when it is up (port filled in); false with the reason in why (one line,
 * naming how to get the server when it is not installed).
 */
bool nbd_server_start(struct nbd_server *s, unsigned size_mib, const char *export_name, char *why, size_t whylen);
/* Stops the server and removes its directory. Safe on a server that never started. */
void nbd_server_stop(struct nbd_server *s);

#endif
