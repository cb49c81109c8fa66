package dev.ext4j.io;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

/**
 * The partition table of a disk image (the kernel's block/partitions/msdos.c and efi.c): an MBR
 * with primary partitions 1-4 and logical partitions 5 and up in the chain of EBRs of an extended
 * partition, or a GPT behind a protective MBR (its header and entry array checked by their CRC32;
 * the backup header at the last sector stands in for a damaged primary one). Partitions are
 * numbered as Linux numbers them. Damage is answered, never thrown as an unchecked exception: an
 * entry that cannot be used (past the image's end, overlapping another) is marked with its
 * problem, which {@link #partition} reports when that partition is asked for; a broken EBR chain
 * (a loop, a link out of the extended partition) ends the walk with a problem of the table; only
 * a GPT whose two headers are both damaged fails {@link #read} (EUCLEAN).
 */
public final class PartitionTable {
    /** How the image is divided. */
    public enum Scheme { NONE, MBR, GPT }

    /**
     * One partition.
     *
     * @param number      its number as Linux gives it (sda1 is 1)
     * @param startSector first sector
     * @param sectors     length in sectors
     * @param sectorSize  bytes per sector
     * @param type        "0x83" (MBR) or the type GUID (GPT)
     * @param name        the GPT partition name ("" for MBR)
     * @param extended    an MBR extended partition: a container of logical partitions, not a filesystem
     * @param problem     why it cannot be used (past the image's end, overlapping another), or null
     */
    public record Partition(int number, long startSector, long sectors, int sectorSize, String type, String name,
                            boolean extended, String problem) {

        /** First byte in the image. */
        public long start() {
            return startSector * sectorSize;
        }

        /** Length in bytes. */
        public long size() {
            return sectors * sectorSize;
        }

        /** A friendly name of the type ("Linux filesystem", "EFI System"), or "" when it is not a known one. */
        public String typeName() {
            return TYPE_NAMES.getOrDefault(type, "");
        }

        Partition withProblem(String p) {
            return new Partition(number, startSector, sectors, sectorSize, type, name, extended,
                    problem == null ? p : problem + "; " + p);
        }
    }

    private static final Map<String, String> TYPE_NAMES = Map.ofEntries(
            Map.entry("0x01", "FAT12"), Map.entry("0x04", "FAT16 <32M"), Map.entry("0x05", "Extended"),
            Map.entry("0x06", "FAT16"), Map.entry("0x07", "HPFS/NTFS/exFAT"), Map.entry("0x0b", "W95 FAT32"),
            Map.entry("0x0c", "W95 FAT32 (LBA)"), Map.entry("0x0e", "W95 FAT16 (LBA)"), Map.entry("0x0f", "W95 Extended (LBA)"),
            Map.entry("0x82", "Linux swap"), Map.entry("0x83", "Linux"), Map.entry("0x85", "Linux extended"),
            Map.entry("0x8e", "Linux LVM"), Map.entry("0xef", "EFI (FAT-12/16/32)"), Map.entry("0xfd", "Linux raid autodetect"),
            Map.entry("0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem"),
            Map.entry("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI System"),
            Map.entry("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "Microsoft basic data (FAT, NTFS)"),
            Map.entry("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"),
            Map.entry("21686148-6449-6E6F-744E-656564454649", "BIOS boot"),
            Map.entry("E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM"),
            Map.entry("A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID"),
            Map.entry("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "Linux root (x86-64)"),
            Map.entry("933AC7E1-2EB4-4F13-B844-0E14E2AEF915", "Linux home"));

    /** Bound of the EBR chain, whatever its links say. */
    static final int MAX_LOGICAL = 256;
    /** Bound of a GPT entry array (128 entries of 128 bytes is usual; this is 8,192 of them). */
    static final long MAX_GPT_ARRAY_BYTES = 1L << 20;

    private final Scheme scheme;
    private final int sectorSize;
    private final List<Partition> partitions;
    private final List<String> problems;
    /** The byte after a GPT's last usable LBA; the image's end for an MBR. */
    private final long usableEnd;

    private PartitionTable(Scheme scheme, int sectorSize, List<Partition> partitions, List<String> problems, long usableEnd) {
        this.scheme = scheme;
        this.usableEnd = usableEnd;
        this.sectorSize = sectorSize;
        this.partitions = List.copyOf(partitions);
        this.problems = List.copyOf(problems);
    }

    public Scheme scheme() {
        return scheme;
    }

    public int sectorSize() {
        return sectorSize;
    }

    /** The partitions by number, extended ones and unusable ones included. */
    public List<Partition> partitions() {
        return partitions;
    }

    /** What was wrong with the table as a whole (a loop in the EBR chain, a damaged primary GPT header). */
    public List<String> problems() {
        return problems;
    }

    /**
     * Partition {@code number}, if it can hold a filesystem; EINVAL naming the reason otherwise
     * (no such partition, an extended partition, one past the image's end or overlapping another).
     */
    public Partition partition(int number) throws Ext4Exception {
        if (scheme == Scheme.NONE) {
            throw new Ext4Exception(Errno.EINVAL, "no partition table (neither MBR nor GPT)"
                    + (problems.isEmpty() ? "" : ": " + String.join("; ", problems)));
        }
        for (Partition p : partitions) {
            if (p.number() == number) {
                if (p.extended()) {
                    throw new Ext4Exception(Errno.EINVAL, "partition " + number + " is an extended partition, a container of"
                            + " the logical partitions (5 and up), not a filesystem");
                }
                if (p.problem() != null) {
                    throw new Ext4Exception(Errno.EINVAL, "partition " + number + ": " + p.problem());
                }
                return p;
            }
        }
        throw new Ext4Exception(Errno.EINVAL, "no partition " + number + " in the " + scheme + " table (partitions: "
                + (partitions.isEmpty() ? "none" : partitions.stream().map(p -> String.valueOf(p.number())).collect(Collectors.joining(", ")))
                + ")" + (problems.isEmpty() ? "" : "; " + String.join("; ", problems)));
    }

    /**
     * Where a filesystem starting at byte {@code offset} must end: the end of the partition that
     * holds the offset, or the start of the next partition, or the end of the usable area of a GPT,
     * or {@code imageBytes} when the image has no table (or one that cannot be read).
     */
    static long endOfRegion(BlockDevice image, long offset, long imageBytes) throws Ext4Exception {
        PartitionTable table;
        try {
            table = read(image);
        } catch (Ext4Exception e) {
            if (e.errno() == Errno.EIO) {
                throw e;
            }
            return imageBytes; // an unreadable table bounds nothing: the offset was given by hand
        }
        long end = table.scheme() == Scheme.GPT ? Math.min(imageBytes, table.usableEnd) : imageBytes;
        for (Partition p : table.partitions) {
            if (p.extended() || p.sectors() == 0 || p.startSector() > imageBytes / p.sectorSize()) {
                continue;
            }
            long pEnd = p.start() + p.size();
            if (p.start() > offset) {
                end = Math.min(end, p.start());
            } else if (pEnd > offset) {
                end = Math.min(end, pEnd);
            }
        }
        return Math.max(end, offset);
    }

    /** Reads the table of {@code image}; EIO when it cannot be read, EUCLEAN when both GPT headers are damaged. */
    public static PartitionTable read(BlockDevice image) throws Ext4Exception {
        long imageBytes;
        try {
            imageBytes = image.size();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "cannot read the image size: " + e.getMessage(), e);
        }
        List<String> problems = new ArrayList<>();
        if (imageBytes < MbrSector.SIZE) {
            return new PartitionTable(Scheme.NONE, MbrSector.SIZE, List.of(), problems, Long.MAX_VALUE);
        }
        MbrSector mbr = new MbrSector(readAt(image, 0, MbrSector.SIZE));
        boolean isMbr = mbr.hasSignature();
        boolean protective = false;
        for (int i = 0; i < 4 && isMbr; i++) {
            // a boot sector of a filesystem (FAT) has the signature too, and code where the entries are
            isMbr = mbr.bootIndicator(i) == 0 || mbr.bootIndicator(i) == 0x80;
            protective |= mbr.type(i) == MbrSector.TYPE_GPT_PROTECTIVE;
        }
        if (isMbr && protective) {
            return readGpt(image, imageBytes, problems);
        }
        if (hasGptSignature(image, imageBytes) != 0) {
            problems.add("a GPT header is present but " + (isMbr ? "the MBR has no protective entry (type 0xee)" : "there is no protective MBR")
                    + ": the GPT is ignored, as Linux does");
        }
        if (!isMbr || (mbr.isBootSector() && IntStream.range(0, 4).allMatch(mbr::isEmpty))) {
            // a FAT boot sector with nothing where the entries would be: a filesystem, not a table
            return new PartitionTable(Scheme.NONE, MbrSector.SIZE, List.of(), problems, Long.MAX_VALUE);
        }
        return readMbr(image, imageBytes, mbr, problems);
    }

    private static PartitionTable readMbr(BlockDevice image, long imageBytes, MbrSector mbr, List<String> problems) throws Ext4Exception {
        long imageSectors = imageBytes / MbrSector.SIZE;
        List<Partition> parts = new ArrayList<>();
        int nextLogical = 5;
        Set<Long> seen = new HashSet<>();
        for (int i = 0; i < 4; i++) {
            if (mbr.isEmpty(i)) {
                continue;
            }
            Partition p = mbrPartition(i + 1, mbr, i, 0, imageSectors);
            parts.add(p);
            if (p.extended() && p.problem() == null) {
                nextLogical = readLogicals(image, p, imageSectors, nextLogical, seen, parts, problems);
            }
        }
        return new PartitionTable(Scheme.MBR, MbrSector.SIZE, markOverlaps(parts), problems, Long.MAX_VALUE);
    }

    private static Partition mbrPartition(int number, MbrSector sector, int i, long base, long imageSectors) {
        int type = sector.type(i);
        Partition p = new Partition(number, base + sector.startSector(i), sector.sectors(i), MbrSector.SIZE,
                String.format(Locale.ROOT, "0x%02x", type), "", MbrSector.isExtended(type), null);
        if (sector.startSector(i) == 0) {
            p = p.withProblem("it starts at sector " + base + ", over the partition table");
        }
        return pastEnd(p, imageSectors);
    }

    private static Partition pastEnd(Partition p, long imageSectors) {
        if (p.startSector() + p.sectors() > imageSectors) {
            return p.withProblem("sectors " + p.startSector() + ".." + (p.startSector() + p.sectors() - 1)
                    + " reach past the end of the image (" + imageSectors + " sectors)");
        }
        return p;
    }

    /** Walks the EBR chain of {@code ext}; returns the next logical number. */
    private static int readLogicals(BlockDevice image, Partition ext, long imageSectors, int number, Set<Long> seen,
                                    List<Partition> parts, List<String> problems) throws Ext4Exception {
        long extEnd = ext.startSector() + ext.sectors();
        long ebr = ext.startSector();
        while (true) {
            if (!seen.add(ebr)) {
                problems.add("the chain of extended boot records loops back to sector " + ebr + "; it is followed no further");
                return number;
            }
            if (seen.size() > MAX_LOGICAL) {
                problems.add("the chain of extended boot records is longer than " + MAX_LOGICAL + "; it is followed no further");
                return number;
            }
            if (ebr < ext.startSector() || ebr >= extEnd) {
                problems.add("an extended boot record at sector " + ebr + " lies outside extended partition " + ext.number()
                        + " (sectors " + ext.startSector() + ".." + (extEnd - 1) + "); the chain is followed no further");
                return number;
            }
            MbrSector sector = new MbrSector(readAt(image, ebr * MbrSector.SIZE, MbrSector.SIZE));
            if (!sector.hasSignature()) {
                problems.add("the extended boot record at sector " + ebr + " has no 0x55aa signature; the chain is followed no further");
                return number;
            }
            if (!sector.isEmpty(0) && !MbrSector.isExtended(sector.type(0))) {
                Partition p = mbrPartition(number++, sector, 0, ebr, imageSectors);
                if (p.startSector() + p.sectors() > extEnd) {
                    p = p.withProblem("it reaches past the end of extended partition " + ext.number() + " (sector " + (extEnd - 1) + ")");
                }
                parts.add(p);
            }
            long next = -1;
            for (int i = 1; i < 4 && next < 0; i++) {
                if (!sector.isEmpty(i) && MbrSector.isExtended(sector.type(i))) {
                    next = ext.startSector() + sector.startSector(i);
                }
            }
            if (next < 0) {
                return number;
            }
            ebr = next;
        }
    }

    /**
     * Marks each partition that shares sectors with another (an extended one holds its logicals,
     * so it is left out): a sweep in order of start, O(n log n) for a GPT of thousands of entries.
     */
    private static List<Partition> markOverlaps(List<Partition> parts) {
        List<Partition> out = new ArrayList<>(parts);
        List<Integer> byStart = new ArrayList<>();
        for (int i = 0; i < out.size(); i++) {
            if (!out.get(i).extended() && out.get(i).sectors() > 0) {
                byStart.add(i);
            }
        }
        byStart.sort(Comparator.comparingLong(i -> out.get(i).startSector()));
        int reach = -1; // the partition reaching furthest so far
        for (int i : byStart) {
            Partition x = parts.get(i);
            if (reach >= 0) {
                Partition r = parts.get(reach);
                if (x.startSector() < r.startSector() + r.sectors()) {
                    out.set(i, out.get(i).withProblem("it overlaps partition " + r.number()));
                    if (out.get(reach).problem() == null || !out.get(reach).problem().contains("overlaps")) {
                        out.set(reach, out.get(reach).withProblem("it overlaps partition " + x.number()));
                    }
                }
            }
            if (reach < 0 || x.startSector() + x.sectors() > parts.get(reach).startSector() + parts.get(reach).sectors()) {
                reach = i;
            }
        }
        out.sort(Comparator.comparingInt(Partition::number));
        return out;
    }

    /** The sector size (512 or 4096) at whose LBA 1 a GPT signature is, or 0. */
    private static int hasGptSignature(BlockDevice image, long imageBytes) throws Ext4Exception {
        for (int ss : new int[] {512, 4096}) {
            if (imageBytes >= 2L * ss && new GptHeader(readAt(image, ss, ss)).hasSignature()) {
                return ss;
            }
        }
        return 0;
    }

    private static PartitionTable readGpt(BlockDevice image, long imageBytes, List<String> problems) throws Ext4Exception {
        int found = hasGptSignature(image, imageBytes);
        int ss = found == 0 ? 512 : found;
        long imageSectors = imageBytes / ss;
        ByteBuffer entries;
        GptHeader header = new GptHeader(readAt(image, ss, ss));
        String primaryProblem = headerProblem(header, 1, ss, imageSectors);
        entries = primaryProblem == null ? readEntries(image, header, ss) : null;
        if (primaryProblem == null && entries == null) {
            primaryProblem = "its partition entry array fails its CRC32";
        }
        if (primaryProblem != null) {
            GptHeader backup = new GptHeader(readAt(image, (imageSectors - 1) * ss, ss));
            String backupProblem = headerProblem(backup, imageSectors - 1, ss, imageSectors);
            ByteBuffer backupEntries = backupProblem == null ? readEntries(image, backup, ss) : null;
            if (backupProblem == null && backupEntries == null) {
                backupProblem = "its partition entry array fails its CRC32";
            }
            if (backupProblem != null) {
                throw Ext4Exception.corrupted("damaged GPT: the primary header at LBA 1: " + primaryProblem
                        + "; the backup header at LBA " + (imageSectors - 1) + ": " + backupProblem);
            }
            problems.add("the primary GPT header at LBA 1 is damaged (" + primaryProblem + "); the backup at LBA "
                    + (imageSectors - 1) + " is used");
            header = backup;
            entries = backupEntries;
        }
        List<Partition> parts = new ArrayList<>();
        int size = (int) header.entrySize();
        for (int i = 0; i < header.entryCount(); i++) {
            GptEntry e = new GptEntry(entries, i * size);
            if (e.isUnused()) {
                continue;
            }
            long first = e.startingLba();
            long last = e.endingLba();
            boolean sane = first >= 0 && last >= first && last < imageSectors;
            Partition p = new Partition(i + 1, first, sane ? last - first + 1 : 0, ss, e.typeGuid(), e.name(), false, null);
            if (!sane) {
                p = p.withProblem("LBA " + Long.toUnsignedString(first) + ".." + Long.toUnsignedString(last)
                        + (Long.compareUnsigned(last, first) < 0 ? " ends before it starts" : " reaches past the end of the image ("
                        + imageSectors + " sectors)"));
            } else if (first < header.firstUsableLba() || last > header.lastUsableLba()) {
                p = p.withProblem("LBA " + first + ".." + last + " lies outside the usable LBAs " + header.firstUsableLba() + ".."
                        + header.lastUsableLba());
            }
            parts.add(p);
        }
        return new PartitionTable(Scheme.GPT, ss, markOverlaps(parts), problems, (header.lastUsableLba() + 1) * ss);
    }

    /** What is wrong with a GPT header read at {@code lba}, or null. */
    private static String headerProblem(GptHeader h, long lba, int ss, long imageSectors) {
        if (!h.hasSignature()) {
            return "no \"EFI PART\" signature";
        }
        if (h.headerSize() < GptHeader.MIN_SIZE || h.headerSize() > ss) {
            return "header_size " + h.headerSize() + " is not in " + GptHeader.MIN_SIZE + ".." + ss;
        }
        long crc = h.computeCrc();
        if (crc != h.storedCrc()) {
            return String.format(Locale.ROOT, "header crc32 stored 0x%08x, computed 0x%08x", h.storedCrc(), crc);
        }
        if (h.myLba() != lba) {
            return "my_lba is " + Long.toUnsignedString(h.myLba()) + " but the header is at LBA " + lba;
        }
        if (h.entrySize() < GptEntry.MIN_SIZE || h.entrySize() % 8 != 0 || h.entryCount() * h.entrySize() > MAX_GPT_ARRAY_BYTES) {
            return h.entryCount() + " entries of " + h.entrySize() + " bytes (entries are at least " + GptEntry.MIN_SIZE
                    + " bytes, a multiple of 8, at most " + MAX_GPT_ARRAY_BYTES + " bytes in all)";
        }
        long arraySectors = (h.entryCount() * h.entrySize() + ss - 1) / ss;
        if (h.entriesLba() < 2 || h.entriesLba() > imageSectors - arraySectors) {
            return "the entry array at LBA " + Long.toUnsignedString(h.entriesLba()) + " (" + arraySectors
                    + " sectors) is not inside the image (" + imageSectors + " sectors)";
        }
        if (h.firstUsableLba() < 0 || h.lastUsableLba() < h.firstUsableLba() || h.lastUsableLba() >= imageSectors) {
            return "usable LBAs " + Long.toUnsignedString(h.firstUsableLba()) + ".." + Long.toUnsignedString(h.lastUsableLba())
                    + " are not inside the image (" + imageSectors + " sectors)";
        }
        return null;
    }

    /** The entry array of a checked header, or null when its CRC32 does not match. */
    private static ByteBuffer readEntries(BlockDevice image, GptHeader h, int ss) throws Ext4Exception {
        ByteBuffer entries = readAt(image, h.entriesLba() * ss, (int) (h.entryCount() * h.entrySize()));
        java.util.zip.CRC32 crc = new java.util.zip.CRC32();
        crc.update(entries.duplicate());
        return crc.getValue() == h.storedEntriesCrc() ? entries : null;
    }

    private static ByteBuffer readAt(BlockDevice image, long pos, int len) throws Ext4Exception {
        ByteBuffer b = ByteBuffer.allocate(len);
        try {
            image.read(pos, b);
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "cannot read the partition table at byte " + pos + ": " + e.getMessage(), e);
        }
        return b.flip();
    }
}
