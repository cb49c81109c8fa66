package dev.ext4j.fs;

/**
 * Options of one mount.
 *
 * @param readOnly           the user asked for a read-only mount
 * @param metadataCacheBytes bound of the metadata block cache
 * @param inodeCacheEntries  bound of the in-memory inode cache
 * @param flushIntervalMillis how often the flusher writes changed metadata home (dirty_writeback)
 * @param errors             what a detected corruption does; null takes the superblock's s_errors
 * @param reservedClusters   blocks kept back from file data for everyone (the kernel's
 *                           reserved_clusters sysfs tunable); -1 for the default, 2% up to 4096
 * @param journal            log metadata changes in the journal of a has_journal image (journal=off
 *                           writes them home unjournaled, as on an image without a journal)
 */
public record MountOptions(boolean readOnly, long metadataCacheBytes, int inodeCacheEntries, long flushIntervalMillis,
                           ErrorPolicy errors, long reservedClusters, boolean journal) {

    public MountOptions(boolean readOnly, long metadataCacheBytes, int inodeCacheEntries) {
        this(readOnly, metadataCacheBytes, inodeCacheEntries, 5000, null, -1, true);
    }

    public static MountOptions defaults() {
        return new MountOptions(false, 64L << 20, 65536);
    }

    public MountOptions withReadOnly(boolean ro) {
        return new MountOptions(ro, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors, reservedClusters, journal);
    }

    public MountOptions withErrors(ErrorPolicy policy) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, policy, reservedClusters, journal);
    }

    public MountOptions withReservedClusters(long blocks) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors, blocks, journal);
    }

    public MountOptions withJournal(boolean on) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors, reservedClusters, on);
    }
}
