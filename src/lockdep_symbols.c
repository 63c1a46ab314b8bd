/*
 * lockdep_symbols.c - names for code addresses in the checker's reports.
 *
 * dladdr names only exported symbols, and a program's own functions, its
 * static ones and the library's hidden ones are none of those. So the
 * object's own ELF symbol table (.symtab, which unstripped builds keep,
 * else .dynsym) is read from its file: the function whose range holds the
 * address. Reports are rare; the last file opened stays mapped.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lockdep.h"

#if UINTPTR_MAX == 0xffffffffffffffffULL
typedef Elf64_Ehdr Ehdr;
typedef Elf64_Shdr Shdr;
typedef Elf64_Sym Sym;
#define SYM_TYPE ELF64_ST_TYPE
#else
typedef Elf32_Ehdr Ehdr;
typedef Elf32_Shdr Shdr;
typedef Elf32_Sym Sym;
#define SYM_TYPE ELF32_ST_TYPE
#endif

static pthread_mutex_t symbols_lock = PTHREAD_MUTEX_INITIALIZER;
static char mapped_name[256];
static const unsigned char *mapped;
static size_t mapped_size;

/* symbols_lock held: maps `path` (keeping the last one); false if it is not a readable ELF file. */
static bool map_file(const char *path)
{
	if (mapped && strcmp(mapped_name, path) == 0)
		return true;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat st;
	void *p = MAP_FAILED;
	if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(Ehdr))
		p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return false;
	if (memcmp(p, ELFMAG, SELFMAG) != 0) {
		munmap(p, (size_t)st.st_size);
		return false;
	}
	if (mapped)
		munmap((void *)mapped, mapped_size);
	mapped = p;
	mapped_size = (size_t)st.st_size;
	snprintf(mapped_name, sizeof mapped_name, "%s", path);
	return true;
}

/* symbols_lock held, a file mapped: the function holding `target` in symbol table of type `type`. */
static const char *lookup(uintptr_t target, unsigned type, uintptr_t *start)
{
	const Ehdr *eh = (const Ehdr *)mapped;
	if (eh->e_shoff == 0 || eh->e_shoff + (size_t)eh->e_shnum * sizeof(Shdr) > mapped_size)
		return NULL;
	const Shdr *sh = (const Shdr *)(mapped + eh->e_shoff);
	for (unsigned i = 0; i < eh->e_shnum; i++) {
		if (sh[i].sh_type != type || sh[i].sh_link >= eh->e_shnum)
			continue;
		const Shdr *strs = &sh[sh[i].sh_link];
		if (sh[i].sh_offset + sh[i].sh_size > mapped_size || strs->sh_offset + strs->sh_size > mapped_size)
			continue;
		const Sym *sym = (const Sym *)(mapped + sh[i].sh_offset);
		size_t n = sh[i].sh_size / sizeof(Sym);
		for (size_t k = 0; k < n; k++) {
			if (SYM_TYPE(sym[k].st_info) != STT_FUNC || sym[k].st_value == 0)
				continue;
			if (target >= sym[k].st_value && target < sym[k].st_value + (sym[k].st_size ? sym[k].st_size : 1) &&
			    sym[k].st_name < strs->sh_size) {
				*start = sym[k].st_value;
				return (const char *)mapped + strs->sh_offset + sym[k].st_name;
			}
		}
	}
	return NULL;
}

const char *ld_symbolise(const void *addr, char *buf, size_t len)
{
	Dl_info info;
	if (!dladdr(addr, &info) || !info.dli_fbase)
		return nf_describe_address(addr, buf, (unsigned)len);
	const char *file = info.dli_fname && *info.dli_fname ? info.dli_fname : "/proc/self/exe";
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	bool named = false;
	pthread_mutex_lock(&symbols_lock);
	if (map_file(file)) {
		const Ehdr *eh = (const Ehdr *)mapped;
		/* Position-independent objects hold addresses relative to where they were loaded. */
		uintptr_t target = (uintptr_t)addr - (eh->e_type == ET_DYN ? (uintptr_t)info.dli_fbase : 0);
		uintptr_t start = 0;
		const char *name = lookup(target, SHT_SYMTAB, &start);
		if (!name)
			name = lookup(target, SHT_DYNSYM, &start);
		if (name) {
			snprintf(buf, len, "%s+0x%lx (%s)", name, (unsigned long)(target - start), base);
			named = true;
		}
	}
	pthread_mutex_unlock(&symbols_lock);
	if (!named)
		nf_describe_address(addr, buf, (unsigned)len);
	return buf;
}
