/* Wine 8 has no bcryptprimitives.dll, and Rust's std (1.78+) on
 * x86_64-pc-windows-gnu imports ProcessPrng from it for every random
 * number (HashMap seeds included), so no Rust binary starts under Wine 8
 * without it. This test-only stand-in forwards to RtlGenRandom
 * (advapi32's SystemFunction036), which Wine implements. It is installed
 * into throwaway Wine prefixes by installers/windows/wine/prefix, never
 * shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
