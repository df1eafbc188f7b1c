/* mbx version numbers. Included by <mbx/mbx.h>. */
#ifndef MBX_VERSION_H
#define MBX_VERSION_H

#define MBX_VERSION_MAJOR 0
#define MBX_VERSION_MINOR 1
#define MBX_VERSION_PATCH 0

/* "0.1.0": the version of the headers a program was compiled against.
 * mbx_version() gives the version of the library it runs with. */
#define MBX_VERSION_STRING "0.1.0"

/* One integer that orders versions: major * 10000 + minor * 100 + patch. */
#define MBX_VERSION_NUMBER                                                     \
    (MBX_VERSION_MAJOR * 10000 + MBX_VERSION_MINOR * 100 + MBX_VERSION_PATCH)

#endif
