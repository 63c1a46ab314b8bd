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
if command -v pkg-config >/dev/null; then
	cflags=$(pkg-config --cflags nofail)
	libs=$(pkg-config --libs nofail)
else
	echo "install check: pkg-config is not installed; using the flags nofail.pc names"
	grep -q '^Libs: -L${libdir} -lnofail' "$prefix/lib/pkgconfig/nofail.pc"
	cflags="-I$prefix/include"
	libs="-L$prefix/lib -lnofail"
fi
cc "$prefix/try.c" $cflags $libs -Wl,-rpath,"$prefix/lib" -o "$prefix/try-shared"
cc "$prefix/try.c" $cflags "$prefix/lib/libnofail.a" -pthread -o "$prefix/try-static"
NOFAIL_BUDGET=16M "$prefix/try-shared"
NOFAIL_BUDGET=16M "$prefix/try-static"
echo "install check: headers, both libraries and nofail.pc work"
