package dev.ext4j.fs;

/**
 * Options of one mount.
 *
 * @param readOnly           the user asked for a read-only mount
 * @param metadataCacheBytes bound of the metadata block cache
 * @param inodeCacheEntries  bound of the in-memory inode cache
 * @param flushIntervalMillis how often the flusher writes changed metadata home (dirty_writeback)
 * @param errors             what a detected corruption does; null takes the superblock's s_errors
 */
public record MountOptions(boolean readOnly, long metadataCacheBytes, int inodeCacheEntries, long flushIntervalMillis,
                           ErrorPolicy errors) {

    public MountOptions(boolean readOnly, long metadataCacheBytes, int inodeCacheEntries) {
        this(readOnly, metadataCacheBytes, inodeCacheEntries, 5000, null);
    }

    public static MountOptions defaults() {
        return new MountOptions(false, 64L << 20, 65536);
    }

    public MountOptions withReadOnly(boolean ro) {
        return new MountOptions(ro, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors);
    }

    public MountOptions withErrors(ErrorPolicy policy) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, policy);
    }
}
