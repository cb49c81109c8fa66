package dev.ext4j.fs;

/**
 * Options of one mount.
 *
 * @param readOnly         the user asked for a read-only mount
 * @param metadataCacheBytes bound of the metadata block cache
 * @param inodeCacheEntries  bound of the in-memory inode cache
 */
public record MountOptions(boolean readOnly, long metadataCacheBytes, int inodeCacheEntries) {

    public static MountOptions defaults() {
        return new MountOptions(false, 64L << 20, 65536);
    }

    public MountOptions withReadOnly(boolean ro) {
        return new MountOptions(ro, metadataCacheBytes, inodeCacheEntries);
    }
}
