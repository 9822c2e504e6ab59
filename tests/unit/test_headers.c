/* Compiles the public headers alone, under -std=c11 -Wpedantic -Werror, and
 * checks a few contract facts at compile time. */
#include <shardroute.h>
#include <shardroute/driver.h>

_Static_assert(SR_OK == 0, "SR_OK is zero");
_Static_assert(SR_EINVAL < 0 && SR_EPARTIAL < 0, "errors are negative");
_Static_assert(SR_DRIVER_ABI_VERSION >= 1, "driver ABI version");

int main(void) { return 0; }
