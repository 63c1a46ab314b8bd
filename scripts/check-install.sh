#!/usr/bin/env bash
# Installs into a scratch prefix and builds a program against it through
# pkg-config, shared and static: the install is what users get.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
make --no-print-directory install PREFIX="$prefix" >/dev/null
cat > "$prefix/try.c" <<'C'
#include <nofail.h>
int main(void)
{
	nf_domain_config cfg = { .budget_bytes = 1 << 20, .name = "install-check" };
	nf_domain *d = nf_domain_create(&cfg);
	void *page = nf_pages_alloc(d, 0, 0);
	nf_pages_free(d, page, 0);
	nf_domain_destroy(d);
	nf_free(nf_malloc(100));
	return 0;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc "$prefix/try.c" $(pkg-config --cflags --libs nofail) -Wl,-rpath,"$prefix/lib" -o "$prefix/try-shared"
cc "$prefix/try.c" $(pkg-config --cflags nofail) "$prefix/lib/libnofail.a" $(pkg-config --libs-only-other --static nofail) -pthread -o "$prefix/try-static"
NOFAIL_BUDGET=16M "$prefix/try-shared"
NOFAIL_BUDGET=16M "$prefix/try-static"
echo "install check: headers, both libraries and nofail.pc work"
