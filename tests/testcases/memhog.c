// memhog MB: allocates and touches MB mebibytes, one at a time, reporting
// "allocated N" every 16 MiB and "done" at the end.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  long mb = argc > 1 ? atol(argv[1]) : 256;
  for (long i = 1; i <= mb; ++i) {
    char* p = malloc(1 << 20);
    if (p == NULL) {
      printf("malloc-failed %ld\n", i);
      return 1;
    }
    memset(p, (int)i, 1 << 20);
    if (i % 16 == 0) printf("allocated %ld\n", i);
  }
  printf("done\n");
  return 0;
}
