package dev.ext4j.nio;

import dev.ext4j.fs.StatFs;
import java.nio.file.FileStore;
import java.nio.file.attribute.BasicFileAttributeView;
import java.nio.file.attribute.FileAttributeView;
import java.nio.file.attribute.FileOwnerAttributeView;
import java.nio.file.attribute.FileStoreAttributeView;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.util.Set;

/** The one store of an image: its space as statfs(2) counts it, in bytes. */
final class ImageFileStore extends FileStore {
    static final Set<String> VIEWS = Set.of("basic", "owner", "posix", "unix", "user");
    private final ImageFileSystem fs;

    ImageFileStore(ImageFileSystem fs) {
        this.fs = fs;
    }

    private StatFs statfs() {
        return fs.core.statfs(false);
    }

    /** The volume label, or the image's file name when it has none. */
    @Override
    public String name() {
        String s = fs.core.superblock().volumeName();
        return s.isEmpty() ? String.valueOf(fs.image().getFileName()) : s;
    }

    @Override
    public String type() {
        return "ext4";
    }

    @Override
    public boolean isReadOnly() {
        return fs.isReadOnly();
    }

    @Override
    public long getTotalSpace() {
        StatFs s = statfs();
        return s.blocks() * s.blockSize();
    }

    /** What an unprivileged user may still use: the free blocks but the reserved ones. */
    @Override
    public long getUsableSpace() {
        StatFs s = statfs();
        return (fs.isRoot() ? s.freeBlocks() : s.availableBlocks()) * s.blockSize();
    }

    @Override
    public long getUnallocatedSpace() {
        StatFs s = statfs();
        return s.freeBlocks() * s.blockSize();
    }

    @Override
    public boolean supportsFileAttributeView(Class<? extends FileAttributeView> type) {
        return type == BasicFileAttributeView.class || type == FileOwnerAttributeView.class
                || type == PosixFileAttributeView.class || type == UserDefinedFileAttributeView.class;
    }

    @Override
    public boolean supportsFileAttributeView(String name) {
        return VIEWS.contains(name);
    }

    @Override
    public <V extends FileStoreAttributeView> V getFileStoreAttributeView(Class<V> type) {
        return null;
    }

    @Override
    public Object getAttribute(String attribute) {
        return switch (attribute) {
            case "totalSpace" -> getTotalSpace();
            case "usableSpace" -> getUsableSpace();
            case "unallocatedSpace" -> getUnallocatedSpace();
            default -> throw new UnsupportedOperationException("file store attribute " + attribute);
        };
    }
}
