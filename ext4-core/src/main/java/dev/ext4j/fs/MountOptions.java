package dev.ext4j.fs;

import dev.ext4j.io.Placement;

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
 * @param cacheBytes         bound of the page cache (file data)
 * @param dirtyExpireMillis  how old dirty data gets before the flusher writes it back (dirty_expire)
 * @param journal            log metadata changes in the journal of a has_journal image (journal=off
 *                           writes them home unjournaled, as on an image without a journal)
 * @param idleFlushMillis    after this long without a change, write everything home (dirty data,
 *                           a commit and a checkpoint), so the image at rest is consistent even
 *                           before the unmount, which FUSE 2 does not wait for; 0 turns it off
 * @param placement          where the filesystem lies in the image: all of it, from an offset, or a
 *                           partition of its MBR or GPT table
 * @param noRecovery         norecovery (noload): a journal that needs recovery is not replayed, the
 *                           filesystem is shown as the image holds it; needs a read-only mount
 */
public record MountOptions(boolean readOnly, long metadataCacheBytes, int inodeCacheEntries, long flushIntervalMillis,
                           ErrorPolicy errors, long reservedClusters, long cacheBytes, long dirtyExpireMillis, boolean journal,
                           long idleFlushMillis, Placement placement, boolean noRecovery) {

    /** The default page cache: 256 MiB. */
    public static final long DEFAULT_CACHE_BYTES = 256L << 20;

    public MountOptions(boolean readOnly, long metadataCacheBytes, int inodeCacheEntries) {
        this(readOnly, metadataCacheBytes, inodeCacheEntries, 5000, null, -1, DEFAULT_CACHE_BYTES, 30_000, true, 0, Placement.WHOLE_IMAGE, false);
    }

    public static MountOptions defaults() {
        return new MountOptions(false, 64L << 20, 65536);
    }

    public MountOptions withReadOnly(boolean ro) {
        return new MountOptions(ro, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors, reservedClusters, cacheBytes, dirtyExpireMillis, journal, idleFlushMillis, placement, noRecovery);
    }

    public MountOptions withErrors(ErrorPolicy policy) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, policy, reservedClusters, cacheBytes, dirtyExpireMillis, journal, idleFlushMillis, placement, noRecovery);
    }

    public MountOptions withReservedClusters(long blocks) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors, blocks, cacheBytes, dirtyExpireMillis, journal, idleFlushMillis, placement, noRecovery);
    }

    /** The page cache bound, the writeback period and the age at which dirty data is written. */
    public MountOptions withWriteback(long cache, long intervalMillis, long expireMillis) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, intervalMillis, errors, reservedClusters, cache, expireMillis, journal, idleFlushMillis, placement, noRecovery);
    }

    public MountOptions withJournal(boolean on) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors, reservedClusters, cacheBytes, dirtyExpireMillis, on, idleFlushMillis, placement, noRecovery);
    }

    /** See {@link #idleFlushMillis}. */
    public MountOptions withIdleFlush(long millis) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors, reservedClusters, cacheBytes, dirtyExpireMillis, journal, millis, placement, noRecovery);
    }

    /** See {@link #placement}. */
    public MountOptions withPlacement(Placement p) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors, reservedClusters, cacheBytes, dirtyExpireMillis, journal, idleFlushMillis, p, noRecovery);
    }

    /** See {@link #noRecovery}. */
    public MountOptions withNoRecovery(boolean on) {
        return new MountOptions(readOnly, metadataCacheBytes, inodeCacheEntries, flushIntervalMillis, errors, reservedClusters, cacheBytes, dirtyExpireMillis, journal, idleFlushMillis, placement, on);
    }
}
