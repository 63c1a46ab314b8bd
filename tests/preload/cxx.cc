// cxx.cc - C++'s operator new and delete on the preload malloc: libstdc++
// routes them to malloc and free, so a block from new has a usable size
// that only our malloc_usable_size knows (a foreign pointer would abort).
#include <malloc.h>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

int main()
{
	std::map<int, std::string> m;
	for (int i = 0; i < 100000; i++)
		m[i] = std::string(i % 100 + 1, 'x');
	std::vector<std::unique_ptr<int[]>> v;
	for (int i = 0; i < 1000; i++)
		v.emplace_back(new int[i + 1]());
	char *p = new char[100];
	size_t usable = malloc_usable_size(p);
	delete[] p;
	size_t total = 0;
	for (auto &kv : m)
		total += kv.second.size();
	bool ok = total == 1000 * 5050 && usable >= 100;
	std::printf("cxx: %s: map of 100000 strings (%zu bytes), new[] usable %zu\n", ok ? "ok" : "FAILED", total,
		    usable);
	return ok ? 0 : 1;
}
