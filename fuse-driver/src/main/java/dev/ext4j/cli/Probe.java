package dev.ext4j.cli;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BlockDevice;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.io.PartitionTable;
import dev.ext4j.io.WindowDevice;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.Locale;

/**
 * {@code ext4j probe IMAGE}: the image's partition table (MBR or GPT) with each partition's number,
 * start, size and type, and the ext2/3/4 filesystems found in them (label and UUID from the
 * superblock at the partition's byte 1024), as {@code partition=N} and {@code offset=BYTES} would
 * mount them. A bare filesystem image is reported as such. The image is only read.
 */
final class Probe {
    private Probe() {
    }

    static int run(Path image, PrintStream out, PrintStream err) {
        try (BlockDevice dev = FileBlockDevice.open(image, true)) {
            PartitionTable table = PartitionTable.read(dev);
            if (table.scheme() == PartitionTable.Scheme.NONE) {
                String fs = filesystem(dev);
                out.println(image + ": no partition table; " + (fs == null
                        ? "no ext2/3/4 filesystem at byte 0 either" : "a bare filesystem image: " + fs));
            } else {
                out.println(image + ": " + table.scheme() + " partition table, " + table.sectorSize() + "-byte sectors, "
                        + table.partitions().size() + " partition(s)");
                int width = table.partitions().stream().mapToInt(p -> type(p).length()).max().orElse(4);
                String format = "%3s %14s %12s %14s  %-" + width + "s  %s";
                out.println(String.format(Locale.ROOT, format, "#", "start", "start sector", "size", "type", "filesystem"));
                for (PartitionTable.Partition p : table.partitions()) {
                    out.println(String.format(Locale.ROOT, format, p.number(), p.start(), p.startSector(), p.size(), type(p),
                            filesystem(dev, p)));
                }
            }
            for (String problem : table.problems()) {
                out.println("warning: " + problem);
            }
            return 0;
        } catch (NoSuchFileException e) {
            err.println("ext4j: cannot probe " + image + ": no such file");
            return 1;
        } catch (IOException e) {
            err.println("ext4j: cannot read " + image + ": " + e.getMessage());
            return 1;
        } catch (Ext4Exception e) {
            err.println("ext4j: " + image + ": " + e.getMessage() + " (" + e.errno() + ")");
            return 1;
        }
    }

    /** The type code, its friendly name and the GPT partition name. */
    private static String type(PartitionTable.Partition p) {
        return p.type() + (p.typeName().isEmpty() ? "" : " " + p.typeName()) + (p.name().isEmpty() ? "" : " \"" + p.name() + "\"");
    }

    private static String filesystem(BlockDevice dev, PartitionTable.Partition p) throws IOException {
        if (p.problem() != null) {
            return "unusable: " + p.problem();
        }
        if (p.extended()) {
            return "(holds the logical partitions)";
        }
        WindowDevice window = new WindowDevice(dev, p.start(), p.size(), "partition " + p.number());
        String found = filesystem(window);
        return found == null ? "-" : found + (fsBytes(window) > p.size() ? " (larger than the partition: not mountable)" : "");
    }

    /** The superblock at byte 1024 if it has the ext2/3/4 magic, or null. */
    private static Superblock superblock(BlockDevice dev) throws IOException {
        if (dev.size() < Superblock.OFFSET_IN_IMAGE + Superblock.SIZE) {
            return null;
        }
        ByteBuffer raw = ByteBuffer.allocate(Superblock.SIZE);
        dev.read(Superblock.OFFSET_IN_IMAGE, raw);
        Superblock sb = new Superblock(raw.flip());
        return sb.magic() == Superblock.MAGIC ? sb : null;
    }

    private static long fsBytes(BlockDevice dev) throws IOException {
        Superblock sb = superblock(dev);
        return sb == null ? 0 : sb.blocksCount() * sb.blockSize();
    }

    /** "ext4 label="root" uuid=..." when an ext2/3/4 superblock is at byte 1024, or null. */
    private static String filesystem(BlockDevice dev) throws IOException {
        Superblock sb = superblock(dev);
        if (sb == null) {
            return null;
        }
        String hex = HexFormat.of().formatHex(sb.uuid());
        String uuid = hex.substring(0, 8) + "-" + hex.substring(8, 12) + "-" + hex.substring(12, 16) + "-"
                + hex.substring(16, 20) + "-" + hex.substring(20);
        return kind(sb) + " label=\"" + sb.volumeName() + "\" uuid=" + uuid + " size=" + sb.blocksCount() * sb.blockSize();
    }

    /** As blkid tells them: ext4 with any feature ext3 lacks, ext3 with a journal, ext2 otherwise. */
    private static String kind(Superblock sb) {
        int ext3Incompat = Feature.FILETYPE.mask() | Feature.RECOVER.mask();
        int ext3RoCompat = Feature.SPARSE_SUPER.mask() | Feature.LARGE_FILE.mask() | Feature.BTREE_DIR.mask();
        if ((sb.featureIncompat() & ~ext3Incompat) != 0 || (sb.featureRoCompat() & ~ext3RoCompat) != 0) {
            return "ext4";
        }
        return sb.has(Feature.HAS_JOURNAL) ? "ext3" : "ext2";
    }
}
